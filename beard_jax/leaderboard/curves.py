"""Robustness curves from `--sweep` records: robust accuracy against ε or steps.

- `curve_frame(records)`: one row per (model configuration, attack, mode, point):
  robust accuracy mean and population std over seeds.
- `area_frame(records)`: one row per curve: the area under it divided by the swept
  range (trapezoid rule), i.e. the mean robust accuracy over the range in %, computed
  per seed and then averaged (± std). A single-point curve's area is its value.
- `plot_curves(frame, path)`: one panel per (attack, mode, hyperparameter), a line per
  method and IPC with error bars over seeds.
- `write_curves(records, out_dir)`: `curves.csv`, `curve_areas.csv` and `curves.png`.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterable, Mapping

import matplotlib
import numpy as np
import pandas as pd

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

_CURVE = ['method', 'dataset', 'ipc', 'protocol', 'training', 'attack', 'mode', 'hparam']


def _points(records: Iterable[Mapping]) -> pd.DataFrame:
  """One row per sweep record: the curve's fields, seed, numeric value, robust accuracy."""
  rows = []
  for r in records:
    if not r.get('sweep'):
      continue
    name = r['sweep'].split('=', 1)[0]
    rows.append(
      {
        'method': r['method'],
        'dataset': r['dataset'],
        'ipc': r['ipc'],
        'protocol': r['protocol'],
        'training': r['training'],
        'attack': r['attack'],
        'mode': 'targeted' if r['targeted'] else 'untargeted',
        'hparam': name,
        'point': r['sweep'].split('=', 1)[1],
        'value': float(r['hparams'][name]),
        'seed': r['seed'],
        'robust_acc': float(r['robust_acc']),
      }
    )
  return pd.DataFrame(rows, columns=[*_CURVE, 'point', 'value', 'seed', 'robust_acc'])


def curve_frame(records: Iterable[Mapping]) -> pd.DataFrame:
  """Curve points: `_CURVE` fields, `point` (as given), `value`, `robust_acc` (mean over
  seeds), `robust_std` (population std), `seeds`; sorted by curve and value."""
  points = _points(records)
  grouped = points.groupby([*_CURVE, 'point', 'value'], sort=True)['robust_acc']
  frame = grouped.agg(robust_acc='mean', robust_std=lambda a: float(np.std(a)), seeds='count')
  return frame.reset_index().sort_values([*_CURVE, 'value'], ignore_index=True)


def normalized_area(values: np.ndarray, accuracies: np.ndarray) -> float:
  """Trapezoid area under accuracy(value) over the range, divided by the range (in %).

  `values` need not be sorted; one point gives its accuracy.
  """
  order = np.argsort(values)
  x, y = np.asarray(values, float)[order], np.asarray(accuracies, float)[order]
  if x.size == 1 or x[-1] == x[0]:
    return float(y.mean())
  return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0 / (x[-1] - x[0]))


def area_frame(records: Iterable[Mapping]) -> pd.DataFrame:
  """Per curve: `points`, `range` ('2/255..10/255'), `area` (mean over seeds of each
  seed's `normalized_area`), `area_std` (population std), `seeds`."""
  points = _points(records)
  rows = []
  for key, curve in points.groupby(_CURVE, sort=True):
    per_seed = [
      normalized_area(seed_points['value'].to_numpy(), seed_points['robust_acc'].to_numpy())
      for _, seed_points in curve.groupby('seed')
    ]
    ordered = curve.sort_values('value')
    rows.append(
      {
        **dict(zip(_CURVE, key, strict=True)),
        'points': int(ordered['value'].nunique()),
        'range': f'{ordered["point"].iloc[0]}..{ordered["point"].iloc[-1]}',
        'area': float(np.mean(per_seed)),
        'area_std': float(np.std(per_seed)),
        'seeds': len(per_seed),
      }
    )
  return pd.DataFrame(rows, columns=[*_CURVE, 'points', 'range', 'area', 'area_std', 'seeds'])


def plot_curves(frame: pd.DataFrame, path: str | os.PathLike) -> str | None:
  """Draws `curve_frame` output; returns the path, or None when there is no curve."""
  if frame.empty:
    return None
  panels = list(frame.groupby(['attack', 'mode', 'hparam', 'protocol'], sort=True))
  figure, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
  for axis, ((attack, mode, hparam, protocol), panel) in zip(axes[0], panels, strict=True):
    for (method, ipc, training), line in panel.groupby(['method', 'ipc', 'training']):
      suffix = '' if training == 'standard' else f', {training}'
      axis.errorbar(
        line['value'],
        line['robust_acc'],
        yerr=line['robust_std'],
        marker='o',
        capsize=3,
        label=f'{method} IPC {ipc}{suffix}',
      )
    axis.set_xticks(panel['value'].unique(), panel.drop_duplicates('value')['point'], rotation=30)
    axis.set_xlabel(f'{hparam} ({protocol} protocol)')
    axis.set_ylabel('robust accuracy, % (mean ± std over seeds)')
    axis.set_ylim(-2, 102)
    axis.set_title(f'{attack} {mode}: robust accuracy against {hparam}')
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
  figure.tight_layout()
  figure.savefig(path, dpi=110)
  plt.close(figure)
  return str(path)


def write_curves(records: Iterable[Mapping], out_dir: str | os.PathLike) -> list[str]:
  """Writes `curves.csv`, `curve_areas.csv` and `curves.png` when there are sweep records.

  Returns:
    The paths written ([] without sweep records).
  """
  records = list(records)
  frame = curve_frame(records)
  if frame.empty:
    return []
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  frame.to_csv(out / 'curves.csv', index=False)
  area_frame(records).to_csv(out / 'curve_areas.csv', index=False)
  figure = plot_curves(frame, out / 'curves.png')
  return [str(out / 'curves.csv'), str(out / 'curve_areas.csv'), figure]

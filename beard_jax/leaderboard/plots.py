"""Figures like the paper's, drawn with matplotlib's Agg backend into PNG files.

- `plot_metric_bars`: RRM, AEM and CREI per method (grouped bars), one panel per dataset.
- `plot_crei_vs_ipc`: CREI against IPC, one line per method, one panel per dataset.
- `plot_training_comparison`: Unified CREI with vs without adversarial training.

Each takes metric rows (`compute_metrics` output) and a selection, draws only
multi-adversary rows, and returns the path written, or None when nothing matches.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from beard_jax.leaderboard.boards import DATASET_TITLES, DATASETS, is_baseline  # noqa: E402

_METRICS = (('rr', 'RRM'), ('ae', 'AEM'), ('crei', 'CREI'))


def _select(rows: Iterable[Mapping], **fields) -> list[Mapping]:
  return [
    r
    for r in rows
    if r['adversary'] == 'all'
    and r['crei'] is not None
    and all(r[k] == v for k, v in fields.items())
  ]


def _datasets(rows: list[Mapping]) -> list[str]:
  present = {r['dataset'] for r in rows}
  return [d for d in DATASETS if d in present] + sorted(present - set(DATASETS))


def _panels(count: int, title: str):
  fig, axes = plt.subplots(1, count, figsize=(4.6 * count + 0.6, 3.8), squeeze=False)
  fig.suptitle(title)
  return fig, axes[0]


def _save(fig, path: str | os.PathLike) -> str:
  fig.tight_layout()
  fig.savefig(path, dpi=110, format='png')
  plt.close(fig)
  return str(path)


def _mode(targeted: bool) -> str:
  return 'targeted' if targeted else 'untargeted'


def plot_metric_bars(
  rows: Iterable[Mapping],
  path: str | os.PathLike,
  *,
  protocol: str,
  training: str = 'standard',
  targeted: bool = False,
  ipc: object = 'combined',
) -> str | None:
  """Grouped bars of RRM, AEM and CREI per method (baseline hatched), per dataset."""
  rows = _select(rows, protocol=protocol, training=training, targeted=targeted, ipc=ipc)
  if not rows:
    return None
  datasets = _datasets(rows)
  label = 'Unified' if ipc == 'combined' else f'IPC {ipc}'
  fig, axes = _panels(len(datasets), f'{label}, {_mode(targeted)}, {training}, {protocol}')
  width = 0.8 / len(_METRICS)
  for ax, dataset in zip(axes, datasets, strict=True):
    chosen = sorted((r for r in rows if r['dataset'] == dataset), key=_method_order)
    for k, (key, name) in enumerate(_METRICS):
      xs = [i + (k - 1) * width for i in range(len(chosen))]
      bars = ax.bar(xs, [r[key] for r in chosen], width, label=name, color=f'C{k}')
      for bar, row in zip(bars, chosen, strict=True):
        if is_baseline(row['method']):
          bar.set_hatch('//')
    ax.set_xticks(range(len(chosen)), [r['method'] for r in chosen], rotation=30)
    ax.set_title(DATASET_TITLES.get(dataset, dataset))
    ax.set_ylabel('%')
    ax.grid(axis='y', alpha=0.3)
  axes[0].legend(fontsize='small')
  return _save(fig, path)


def _method_order(row: Mapping) -> tuple:
  return (is_baseline(row['method']), row['method'])


def plot_crei_vs_ipc(
  rows: Iterable[Mapping],
  path: str | os.PathLike,
  *,
  protocol: str,
  training: str = 'standard',
  targeted: bool = False,
) -> str | None:
  """CREI against IPC (categorical axis), one line per method, one panel per dataset."""
  rows = [
    r
    for r in _select(rows, protocol=protocol, training=training, targeted=targeted)
    if isinstance(r['ipc'], int) and not is_baseline(r['method'])
  ]
  if not rows:
    return None
  datasets = _datasets(rows)
  fig, axes = _panels(len(datasets), f'CREI vs IPC, {_mode(targeted)}, {training}, {protocol}')
  for ax, dataset in zip(axes, datasets, strict=True):
    chosen = [r for r in rows if r['dataset'] == dataset]
    ipcs = sorted({r['ipc'] for r in chosen})
    for method in sorted({r['method'] for r in chosen}):
      points = sorted((r['ipc'], r['crei']) for r in chosen if r['method'] == method)
      ax.plot([ipcs.index(i) for i, _ in points], [c for _, c in points], marker='o', label=method)
    ax.set_xticks(range(len(ipcs)), [str(i) for i in ipcs])
    ax.set_xlabel('IPC')
    ax.set_ylabel('CREI (%)')
    ax.set_title(DATASET_TITLES.get(dataset, dataset))
    ax.grid(alpha=0.3)
  axes[-1].legend(fontsize='small')
  return _save(fig, path)


def plot_training_comparison(
  rows: Iterable[Mapping],
  path: str | os.PathLike,
  *,
  protocol: str,
  targeted: bool = False,
  ipc: object = 'combined',
) -> str | None:
  """CREI with ('adversarial') vs without ('standard') adversarial training, per method.

  Only methods that have both trainings are drawn; None when there are none.
  """
  rows = _select(rows, protocol=protocol, targeted=targeted, ipc=ipc)
  by_key = {(r['dataset'], r['method'], r['training']): r['crei'] for r in rows}
  pairs = sorted(
    {(d, m) for d, m, t in by_key if t == 'standard' and (d, m, 'adversarial') in by_key},
    key=lambda dm: (dm[0], is_baseline(dm[1]), dm[1]),
  )
  if not pairs:
    return None
  datasets = [d for d in _datasets([{'dataset': d} for d, _ in pairs])]
  label = 'Unified' if ipc == 'combined' else f'IPC {ipc}'
  fig, axes = _panels(len(datasets), f'CREI w/o vs w/ AT, {label}, {_mode(targeted)}, {protocol}')
  for ax, dataset in zip(axes, datasets, strict=True):
    methods = [m for d, m in pairs if d == dataset]
    for k, (training, name) in enumerate((('standard', 'w/o AT'), ('adversarial', 'w/ AT'))):
      xs = [i + (k - 0.5) * 0.4 for i in range(len(methods))]
      ax.bar(xs, [by_key[(dataset, m, training)] for m in methods], 0.4, label=name, color=f'C{k}')
    ax.set_xticks(range(len(methods)), methods, rotation=30)
    ax.set_ylabel('CREI (%)')
    ax.set_title(DATASET_TITLES.get(dataset, dataset))
    ax.grid(axis='y', alpha=0.3)
  axes[0].legend(fontsize='small')
  return _save(fig, path)

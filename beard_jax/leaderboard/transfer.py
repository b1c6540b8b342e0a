"""Transfer matrices from `--transfer` records: robust accuracy of target models on
adversarials crafted on source models.

- `transfer_frame(records)`: one row per (protocol, training, attack, mode, source,
  target): robust accuracy mean and population std over the (source seed, target seed)
  pairs, and the pairs' count. Models are named `<METHOD> IPC <ipc>`; their seeds are
  averaged, so the diagonal mixes a model's white-box accuracy (same seed) with transfer
  between its seeds (other seeds).
- `transfer_matrix(frame, ...)`: one (protocol, training, attack, mode) as a source × target
  table (rows: crafted on, columns: scored on).
- `plot_transfer(frame, path, ...)`: heatmaps, one panel per attack, values written in.
- `write_transfer(records, out_dir)`: `transfer.csv` and `transfer_<protocol>_<mode>.png`.
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

from beard_jax.leaderboard.boards import order_attacks  # noqa: E402

_KEY = ['protocol', 'training', 'attack', 'mode', 'source', 'target']


def _model_name(method: str, ipc) -> str:
  return f'{method} IPC {ipc}'


def transfer_frame(records: Iterable[Mapping]) -> pd.DataFrame:
  """Rows `_KEY` + `robust_acc` (mean), `robust_std`, `pairs`, `clean_acc` (the target's)."""
  rows = []
  for r in records:
    if not r.get('transfer_to'):
      continue
    method, ipc, _, _ = r['transfer_to'].split('/')
    rows.append(
      {
        'protocol': r['protocol'],
        'training': r['training'],
        'attack': r['attack'],
        'mode': 'targeted' if r['targeted'] else 'untargeted',
        'source': _model_name(r['method'], r['ipc']),
        'target': _model_name(method, ipc.removeprefix('ipc')),
        'robust_acc': float(r['robust_acc']),
        'clean_acc': float(r['clean_acc']),
      }
    )
  frame = pd.DataFrame(rows, columns=[*_KEY, 'robust_acc', 'clean_acc'])
  grouped = frame.groupby(_KEY, sort=True)
  summary = grouped.agg(
    robust_acc=('robust_acc', 'mean'),
    robust_std=('robust_acc', lambda a: float(np.std(a))),
    pairs=('robust_acc', 'count'),
    clean_acc=('clean_acc', 'mean'),
  )
  return summary.reset_index()


def transfer_matrix(
  frame: pd.DataFrame, protocol: str, training: str, attack: str, mode: str
) -> pd.DataFrame:
  """Source (rows, crafted on) × target (columns, scored on) mean robust accuracy in %."""
  part = frame[
    (frame['protocol'] == protocol)
    & (frame['training'] == training)
    & (frame['attack'] == attack)
    & (frame['mode'] == mode)
  ]
  return part.pivot(index='source', columns='target', values='robust_acc')


def _matrices(frame: pd.DataFrame):
  """((protocol, training, mode), [(attack, matrix), ...]) in a fixed order."""
  groups = frame.groupby(['protocol', 'training', 'mode'], sort=True)
  for (protocol, training, mode), part in groups:
    attacks = order_attacks(part['attack'].unique())
    yield (
      (protocol, training, mode),
      [(attack, transfer_matrix(frame, protocol, training, attack, mode)) for attack in attacks],
    )


def plot_transfer(frame: pd.DataFrame, path: str | os.PathLike, protocol, training, mode):
  """Heatmaps of one (protocol, training, mode), a panel per attack; returns the path."""
  ((_, panels),) = [(k, m) for k, m in _matrices(frame) if k == (protocol, training, mode)]
  size = max(len(m) for _, m in panels)
  figure, axes = plt.subplots(
    1,
    len(panels),
    figsize=((0.9 * size + 1.0) * len(panels) + 3.0, 0.8 * size + 2.5),
    squeeze=False,
    sharey=True,
  )
  for index, (axis, (attack, matrix)) in enumerate(zip(axes[0], panels, strict=True)):
    image = axis.imshow(matrix.to_numpy(), vmin=0, vmax=100, cmap='viridis')
    axis.set_xticks(range(matrix.shape[1]), matrix.columns, rotation=45, ha='right')
    axis.set_yticks(range(matrix.shape[0]), matrix.index)
    for (i, j), value in np.ndenumerate(matrix.to_numpy()):
      color = 'black' if value > 60 else 'white'
      axis.text(j, i, f'{value:.1f}', ha='center', va='center', fontsize=8, color=color)
    axis.set_xlabel('scored on (target)')
    if index == 0:
      axis.set_ylabel('crafted on (source)')
    axis.set_title(f'{attack} {mode}')
  figure.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label='robust accuracy, %')
  figure.suptitle(f"Transfer: each target's robust accuracy on each source's adversarials\n"
                  f'({protocol} protocol, {training} training)')  # fmt: skip
  figure.savefig(path, dpi=110, bbox_inches='tight')
  plt.close(figure)
  return str(path)


def transfer_markdown(frame: pd.DataFrame) -> list[str]:
  """Markdown lines: a titled source × target table per (protocol, training, mode, attack)."""
  lines = []
  for (protocol, training, mode), panels in _matrices(frame):
    for attack, matrix in panels:
      lines += [f'**{attack} {mode}** ({protocol} protocol, {training} training; rows: crafted '
                'on, columns: scored on; robust accuracy %)', '']  # fmt: skip
      header = ['source \\ target', *matrix.columns]
      lines += ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
      for source, row in matrix.iterrows():
        values = ['–' if np.isnan(v) else f'{v:.2f}' for v in row.to_numpy()]
        lines.append('| ' + ' | '.join([source, *values]) + ' |')
      lines.append('')
  return lines


def write_transfer(records: Iterable[Mapping], out_dir: str | os.PathLike) -> list[str]:
  """Writes `transfer.csv` and a heatmap per (protocol, training, mode); [] without records."""
  frame = transfer_frame(records)
  if frame.empty:
    return []
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  frame.to_csv(out / 'transfer.csv', index=False)
  written = [str(out / 'transfer.csv')]
  for protocol, training, mode in sorted({k for k, _ in _matrices(frame)}):
    suffix = '' if training == 'standard' else f'_{training}'
    path = out / f'transfer_{protocol}_{mode}{suffix}.png'
    written.append(plot_transfer(frame, path, protocol, training, mode))
  return written

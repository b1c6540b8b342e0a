"""Leaderboards from metric rows (PROTOCOL.md §7): one ranked table per board.

A board is one (protocol, training, mode, dataset, IPC) cell; the published twelve
are the untargeted, standard-training boards of {cifar10, cifar100, tinyimagenet} ×
{Unified ('combined'), IPC 1, 10, 50}. Targeted boards and adversarial-training boards
are built the same way. Only multi-adversary rows (`adversary == 'all'`) enter.

Ranking: CREI descending, ties broken by method name (ascending, case-sensitive), ranks
1, 2, 3, ... with no gaps. Rows whose CREI is undefined come next, unranked. Full-size
baseline rows (method 'full', any case) are shown last and never ranked; a board uses
the baseline's row of the same IPC, else its 'combined' row (a Full-size model has no
IPC of its own).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

BASELINE_METHODS = frozenset({'full'})
DATASETS = ('cifar10', 'cifar100', 'tinyimagenet')
BOARD_IPCS = ('combined', 1, 10, 50)
DATASET_TITLES = {'cifar10': 'CIFAR-10', 'cifar100': 'CIFAR-100', 'tinyimagenet': 'Tiny-ImageNet'}


@dataclasses.dataclass(frozen=True)
class Entry:
  """One line of a board; metric values are full precision (percent)."""

  rank: int | None
  method: str
  crei: float | None
  rr: float | None
  ae: float | None
  clean_acc: float | None
  worst_robust_acc: float | None
  worst_attack: str | None
  num_seeds: int
  baseline: bool
  degenerate: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Board:
  """A ranked leaderboard for one (protocol, training, mode, dataset, IPC)."""

  protocol: str
  training: str
  targeted: bool
  dataset: str
  ipc: object  # 'combined' or an int
  entries: tuple[Entry, ...]

  @property
  def mode(self) -> str:
    return 'targeted' if self.targeted else 'untargeted'

  @property
  def ipc_label(self) -> str:
    return 'Unified' if self.ipc == 'combined' else f'IPC {self.ipc}'

  @property
  def title(self) -> str:
    dataset = DATASET_TITLES.get(self.dataset, self.dataset)
    training = 'w/ AT' if self.training == 'adversarial' else f'{self.training} training'
    return f'{dataset} · {self.ipc_label} · {self.mode} · {training} · {self.protocol} protocol'

  @property
  def slug(self) -> str:
    ipc = 'unified' if self.ipc == 'combined' else f'ipc{self.ipc}'
    return f'{self.protocol}-{self.training}-{self.mode}-{self.dataset}-{ipc}'


def is_baseline(method: str) -> bool:
  return method.strip().lower() in BASELINE_METHODS


def _entry(row: Mapping, rank: int | None) -> Entry:
  return Entry(
    rank=rank,
    method=row['method'],
    crei=row['crei'],
    rr=row['rr'],
    ae=row['ae'],
    clean_acc=row['clean_acc'],
    worst_robust_acc=row['worst_robust_acc'],
    worst_attack=row['worst_attack'],
    num_seeds=row['num_seeds'],
    baseline=is_baseline(row['method']),
    degenerate=tuple(row['degenerate']),
  )


def rank_rows(rows: Iterable[Mapping], baselines: Iterable[Mapping] = ()) -> tuple[Entry, ...]:
  """Ranks the rows of one board (see the module docstring for the order).

  Raises:
    ValueError: a method appears twice (the rows mix boards).
  """
  rows = list(rows)
  methods = [r['method'] for r in rows]
  if len(set(methods)) != len(methods):
    raise ValueError(f'a board needs one row per method, got {sorted(methods)}')
  scored = sorted(
    (r for r in rows if r['crei'] is not None), key=lambda r: (-r['crei'], r['method'])
  )
  unscored = sorted((r for r in rows if r['crei'] is None), key=lambda r: r['method'])
  entries = [_entry(r, rank) for rank, r in enumerate(scored, start=1)]
  entries += [_entry(r, None) for r in unscored]
  entries += [_entry(r, None) for r in sorted(baselines, key=lambda r: r['method'])]
  return tuple(entries)


def _ipc_order(ipc) -> tuple:
  if ipc in BOARD_IPCS:
    return (0, BOARD_IPCS.index(ipc), '')
  return (1, ipc if isinstance(ipc, (int, float)) else 0, str(ipc))


def _order(key: tuple) -> tuple:
  protocol, training, targeted, dataset, ipc = key
  dataset_order = DATASETS.index(dataset) if dataset in DATASETS else len(DATASETS)
  return (
    str(protocol),
    training != 'standard',
    str(training),
    targeted,
    dataset_order,
    str(dataset),
    _ipc_order(ipc),
  )


def build_boards(rows: Iterable[Mapping]) -> list[Board]:
  """Every board that has at least one non-baseline row, in a fixed order.

  Order: protocol, standard training before others, untargeted before targeted,
  cifar10 / cifar100 / tinyimagenet, then Unified, IPC 1, 10, 50, other IPCs.
  """
  cells: dict[tuple, list[Mapping]] = {}
  baselines: dict[tuple, dict] = {}
  for row in rows:
    if row['adversary'] != 'all':
      continue
    key = (row['protocol'], row['training'], row['targeted'], row['dataset'], row['ipc'])
    if is_baseline(row['method']):
      baselines.setdefault(key[:4], {}).setdefault(row['method'], {})[row['ipc']] = row
    else:
      cells.setdefault(key, []).append(row)
  boards = []
  for key in sorted(cells, key=_order):
    ipc = key[4]
    chosen = []
    for by_ipc in baselines.get(key[:4], {}).values():
      row = by_ipc.get(ipc, by_ipc.get('combined'))
      if row is not None:
        chosen.append(row)
    boards.append(Board(*key, entries=rank_rows(cells[key], chosen)))
  return boards


def missing_published_boards(boards: Iterable[Board]) -> list[str]:
  """Titles of the twelve published boards (per protocol seen) that have no data."""
  boards = list(boards)
  protocols = sorted({b.protocol for b in boards}) or ['beard']
  present = {(b.protocol, b.training, b.targeted, b.dataset, b.ipc) for b in boards}
  missing = []
  for protocol in protocols:
    for dataset in DATASETS:
      for ipc in BOARD_IPCS:
        if (protocol, 'standard', False, dataset, ipc) not in present:
          missing.append(Board(protocol, 'standard', False, dataset, ipc, ()).title)
  return missing

"""Leaderboards from metric rows (PROTOCOL.md §7): one ranked table per board.

A board is one (protocol, training, mode, dataset, IPC) cell; the published twelve
are the untargeted, standard-training boards of {cifar10, cifar100, tinyimagenet} ×
{Unified ('combined'), IPC 1, 10, 50}. Targeted boards and adversarial-training boards
are built the same way. Only multi-adversary rows (`adversary == 'all'`) enter.

Ranking: CREI descending, ties broken by method name (ascending, case-sensitive), ranks
1, 2, 3, ... with no gaps. Rows whose CREI is undefined or meaningless come next,
unranked, by method name: those with a note in `UNRANKED_CODES` (a model at or below
chance, one that no attack moved, a mode with no attack left), whose CREI says nothing
about robustness (a model at 0 % clean accuracy would otherwise lead with CREI 50).
Full-size baseline rows (method 'full', any case) are shown last and never ranked; a
board uses the baseline's row of the same IPC, else its 'combined' row (a Full-size
model has no IPC of its own).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

BASELINE_METHODS = frozenset({'full'})
# The codes of the notes (`formulas.diagnose`, `aggregate`) that leave a row out of the
# ranking, and what they mean to the reader of a board.
UNRANKED_CODES = {
  'clean_at_chance': 'clean accuracy at or below chance (100/K % for K classes)',
  'clean_acc_zero': 'clean accuracy 0 (rome RR undefined)',
  'clean_equals_min_acc': 'no attack lowered the accuracy (RR 0 by convention)',
  'no_attacks': 'no attack left in this mode (no RR, AE or CREI)',
}
# Attacks in the order the paper lists them; others follow alphabetically.
ATTACK_ORDER = ('fgsm', 'pgd', 'pgd_l2', 'cw', 'deepfool', 'aa')
ATTACK_TITLES = {
  'fgsm': 'FGSM', 'pgd': 'PGD', 'pgd_l2': 'PGD-L2', 'cw': 'C&W', 'deepfool': 'DeepFool',
  'aa': 'AutoAttack', 'square': 'Square', 'spsa': 'SPSA',
}  # fmt: skip
DATASETS = ('cifar10', 'cifar100', 'tinyimagenet')
BOARD_IPCS = ('combined', 1, 10, 50)
DATASET_TITLES = {'cifar10': 'CIFAR-10', 'cifar100': 'CIFAR-100', 'tinyimagenet': 'Tiny-ImageNet'}


@dataclasses.dataclass(frozen=True)
class Entry:
  """One line of a board; metric values are full precision (percent).

  `robust_accs` maps each attack to its robust accuracy (the mean over the row's IPCs);
  `seed_std` holds the population std over seeds of 'clean_acc', 'rr', 'ae', 'crei',
  'worst_robust_acc' and 'robust_acc/<attack>' (empty for one seed).
  """

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
  robust_accs: Mapping[str, float] = dataclasses.field(default_factory=dict)
  seed_std: Mapping[str, float] = dataclasses.field(default_factory=dict)

  @property
  def unranked_reasons(self) -> tuple[str, ...]:
    """The notes that keep this entry out of the ranking (none for a rankable one)."""
    return unranked_reasons(self.degenerate)

  def std(self, key: str) -> float | None:
    """The std over seeds of `key` ('crei', 'robust_acc/pgd', ...); None for one seed."""
    return self.seed_std.get(key)


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


def unranked_reasons(notes: Iterable[str]) -> tuple[str, ...]:
  """The notes whose code (the text before ':') is in `UNRANKED_CODES`."""
  return tuple(n for n in notes if n.split(':')[0] in UNRANKED_CODES)


def attack_title(attack: str) -> str:
  """'pgd_l2' → 'PGD-L2', 'cw' → 'C&W'; unknown names upper-cased."""
  return ATTACK_TITLES.get(attack, attack.upper().replace('_', '-'))


def order_attacks(attacks: Iterable[str]) -> list[str]:
  """Distinct attack names, `ATTACK_ORDER` first, then the others alphabetically."""
  attacks = set(attacks)
  known = [a for a in ATTACK_ORDER if a in attacks]
  return known + sorted(attacks - set(ATTACK_ORDER))


def _robust_accs(row: Mapping) -> dict[str, float]:
  """Attack → mean robust accuracy over the row's entries of that attack (its IPCs)."""
  pairs = list(zip(row['attacks'], row['attack_accs'], strict=True))
  out = {}
  for attack in order_attacks(a for a, _ in pairs):
    accs = [acc for a, acc in pairs if a == attack]
    out[attack] = sum(accs) / len(accs)
  return out


def make_entry(row: Mapping, rank: int | None = None) -> Entry:
  """The `Entry` of a metric row (`compute_metrics`); `seed_std` may be absent (one seed)."""
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
    robust_accs=_robust_accs(row),
    seed_std=dict(row.get('seed_std') or {}),
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
  scored, unscored = [], []
  for r in rows:
    rankable = r['crei'] is not None and not unranked_reasons(r['degenerate'])
    (scored if rankable else unscored).append(r)
  scored.sort(key=lambda r: (-r['crei'], r['method']))
  unscored.sort(key=lambda r: r['method'])
  entries = [make_entry(r, rank) for rank, r in enumerate(scored, start=1)]
  entries += [make_entry(r) for r in unscored]
  entries += [make_entry(r) for r in sorted(baselines, key=lambda r: r['method'])]
  return tuple(entries)


def _ipc_order(ipc) -> tuple:
  if ipc in BOARD_IPCS:
    return (0, BOARD_IPCS.index(ipc), '')
  return (1, ipc if isinstance(ipc, (int, float)) else 0, str(ipc))


def _table_order(protocol: str, training: str, dataset: str) -> tuple:
  dataset_order = DATASETS.index(dataset) if dataset in DATASETS else len(DATASETS)
  return (str(protocol), training != 'standard', str(training), dataset_order, str(dataset))


def _order(key: tuple) -> tuple:
  protocol, training, targeted, dataset, ipc = key
  protocol, standard, training, dataset_order, dataset = _table_order(protocol, training, dataset)
  return (protocol, standard, training, targeted, dataset_order, dataset, _ipc_order(ipc))


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


@dataclasses.dataclass(frozen=True)
class ModelLine:
  """One trained model (method, IPC) of an accuracy table, with its entry per mode."""

  method: str
  ipc: object
  modes: Mapping[bool, Entry]  # targeted → the model's multi-adversary row, unranked

  @property
  def baseline(self) -> bool:
    return is_baseline(self.method)

  @property
  def clean(self) -> Entry:
    """The entry whose clean accuracy is shown: the untargeted one where there is one."""
    return self.modes.get(False, self.modes.get(True))

  @property
  def num_seeds(self) -> int:
    return min(e.num_seeds for e in self.modes.values())


@dataclasses.dataclass(frozen=True)
class AccuracyTable:
  """Robust accuracy per attack and mode of every model of one (protocol, training, dataset)."""

  protocol: str
  training: str
  dataset: str
  lines: tuple[ModelLine, ...]

  @property
  def title(self) -> str:
    dataset = DATASET_TITLES.get(self.dataset, self.dataset)
    training = 'w/ AT' if self.training == 'adversarial' else f'{self.training} training'
    return f'{dataset} · robust accuracy per attack · {training} · {self.protocol} protocol'

  @property
  def slug(self) -> str:
    return f'accuracy-{self.protocol}-{self.training}-{self.dataset}'


def build_accuracy_tables(rows: Iterable[Mapping]) -> list[AccuracyTable]:
  """One table per (protocol, training, dataset) of the per-IPC multi-adversary rows.

  Lines: distilled models by method then IPC, then the baselines. Tables in the order
  of `build_boards`.
  """
  models: dict[tuple, dict[tuple, dict[bool, Entry]]] = {}
  for row in rows:
    if row['adversary'] != 'all' or row['ipc'] == 'combined':
      continue
    key = (row['protocol'], row['training'], row['dataset'])
    model = models.setdefault(key, {}).setdefault((row['method'], row['ipc']), {})
    model[row['targeted']] = make_entry(row)
  tables = []
  for key in sorted(models, key=lambda k: _table_order(*k)):
    order = sorted(models[key], key=lambda m: (is_baseline(m[0]), m[0], _ipc_order(m[1])))
    lines = tuple(ModelLine(m, ipc, models[key][m, ipc]) for m, ipc in order)
    tables.append(AccuracyTable(*key, lines))
  return tables

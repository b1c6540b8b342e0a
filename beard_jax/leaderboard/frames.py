"""Boards and accuracy tables as pandas DataFrames: numbers first, then display text.

`board_frame` and `accuracy_frame` hold full-precision numbers: a value column `x` has
the population std over seeds beside it as `x_std` (NaN with one seed). CSV writes
them as they are; `board_display` and `accuracy_display` turn them into the text that
Markdown and HTML show: two decimals, 'mean ± std', '–' for a missing value, rank '–'
for an unranked row, baselines as `full (baseline)`, and the codes of the notes, led by
'not ranked:' and the codes that say why where a row is left out of the ranking
(`boards.UNRANKED_CODES` explains them).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from beard_jax.leaderboard.boards import (
  AccuracyTable,
  Board,
  Entry,
  attack_title,
  order_attacks,
)
from beard_jax.metrics.tables import MISSING, mean_std_text

_METRIC_LABELS = {'crei': 'CREI', 'rr': 'RRM', 'ae': 'AEM'}


def _mode(targeted: bool) -> str:
  return 'targeted' if targeted else 'untargeted'


def _put(record: dict, key: str, value: float | None, std: float | None) -> None:
  record[key] = value
  record[f'{key}_std'] = std


def _entry_values(record: dict, entry: Entry | None, keys: Sequence[str], suffix: str = '') -> None:
  """Puts each of `keys` ('crei', 'robust_acc/pgd', ...) and its std, named key + suffix."""
  for key in keys:
    if entry is None:
      _put(record, key + suffix, None, None)
    elif key.startswith('robust_acc/'):
      _put(record, key + suffix, entry.robust_accs.get(key.split('/')[1]), entry.std(key))
    else:
      _put(record, key + suffix, getattr(entry, key), entry.std(key))


def board_attacks(board: Board) -> list[str]:
  """The attacks of a board's entries, in `order_attacks` order."""
  return order_attacks(a for e in board.entries for a in e.robust_accs)


def board_frame(board: Board, attacks: Sequence[str] | None = None) -> pd.DataFrame:
  """One row per entry: rank (Int64), method, baseline, num_seeds, crei, rr, ae, clean_acc,
  robust_acc/<attack> for each of `attacks` (default: the board's), worst_robust_acc
  (each with `_std`), worst_attack, not_ranked and degenerate (lists of notes)."""
  attacks = board_attacks(board) if attacks is None else attacks
  keys = ['crei', 'rr', 'ae', 'clean_acc', *(f'robust_acc/{a}' for a in attacks)]
  records = []
  for entry in board.entries:
    record = {
      'rank': entry.rank,
      'method': entry.method,
      'baseline': entry.baseline,
      'num_seeds': entry.num_seeds,
    }
    _entry_values(record, entry, [*keys, 'worst_robust_acc'])
    record['worst_attack'] = entry.worst_attack
    record['not_ranked'] = list(entry.unranked_reasons)
    record['degenerate'] = list(entry.degenerate)
    records.append(record)
  frame = pd.DataFrame.from_records(records)
  frame['rank'] = frame['rank'].astype('Int64')
  return frame


def accuracy_frame(table: AccuracyTable) -> pd.DataFrame:
  """One row per model: method, baseline, ipc, num_seeds, clean_acc, then
  robust_acc/<attack>/<mode> for every attack and mode, then crei/rr/ae/<mode>
  (each with `_std`), not_ranked and degenerate (lists of notes, see `_merged_notes`)."""
  modes = sorted({t for line in table.lines for t in line.modes})
  attacks = {
    t: order_attacks(
      a for line in table.lines if t in line.modes for a in line.modes[t].robust_accs
    )
    for t in modes
  }
  records = []
  for line in table.lines:
    record = {'method': line.method, 'baseline': line.baseline, 'ipc': line.ipc}
    record['num_seeds'] = line.num_seeds
    _entry_values(record, line.clean, ['clean_acc'])
    for t in modes:
      keys = [f'robust_acc/{a}' for a in attacks[t]]
      _entry_values(record, line.modes.get(t), keys, f'/{_mode(t)}')
    for t in modes:
      _entry_values(record, line.modes.get(t), list(_METRIC_LABELS), f'/{_mode(t)}')
    record['not_ranked'] = _merged_notes(line.modes, lambda e: e.unranked_reasons)
    record['degenerate'] = _merged_notes(line.modes, lambda e: e.degenerate)
    records.append(record)
  return pd.DataFrame.from_records(records)


def _merged_notes(modes: dict[bool, Entry], notes_of) -> list[str]:
  """The notes of every mode once; '<code> (<mode>): ...' for a note of one mode only."""
  out = []
  for targeted, entry in sorted(modes.items()):
    for note in notes_of(entry):
      if not all(note in notes_of(e) for e in modes.values()):
        code, _, text = note.partition(':')
        note = f'{code} ({_mode(targeted)}):{text}'
      if note not in out:
        out.append(note)
  return out


def _number(value) -> float | None:
  return None if value is None or pd.isna(value) else float(value)


def _mean_std(frame: pd.DataFrame, column: str) -> list[str]:
  std = frame[f'{column}_std'] if f'{column}_std' in frame else [None] * len(frame)
  return [mean_std_text(_number(m), _number(s)) for m, s in zip(frame[column], std, strict=True)]


def _methods(frame: pd.DataFrame) -> list[str]:
  pairs = zip(frame['method'], frame['baseline'], strict=True)
  return [f'{m} (baseline)' if b else m for m, b in pairs]


def _codes(notes: Sequence[str]) -> str:
  return ', '.join(n.split(':')[0] for n in notes)


def _notes(frame: pd.DataFrame) -> list[str]:
  """The codes of the notes; 'not ranked: <codes>; also <codes>' for an unranked row."""
  out = []
  for reasons, notes in zip(frame['not_ranked'], frame['degenerate'], strict=True):
    others = _codes([n for n in notes if n not in reasons])
    if reasons:
      others = f'not ranked: {_codes(reasons)}' + (f'; also {others}' if others else '')
    out.append(others)
  return out


def _value_columns(frame: pd.DataFrame, prefix: str) -> list[str]:
  return [c for c in frame.columns if c.startswith(prefix) and not c.endswith('_std')]


def board_display(frame: pd.DataFrame) -> pd.DataFrame:
  """The text of a `board_frame`: Rank, Method, Seeds, CREI, RRM, AEM, Clean acc,
  '<ATTACK> acc' per attack, Worst-case robust acc, Notes."""
  columns = {
    'Rank': [MISSING if pd.isna(r) else str(r) for r in frame['rank']],
    'Method': _methods(frame),
    'Seeds': [str(n) for n in frame['num_seeds']],
  }
  columns |= {label: _mean_std(frame, key) for key, label in _METRIC_LABELS.items()}
  columns['Clean acc'] = _mean_std(frame, 'clean_acc')
  for column in _value_columns(frame, 'robust_acc/'):
    columns[f'{attack_title(column.split("/")[1])} acc'] = _mean_std(frame, column)
  columns['Worst-case robust acc'] = _mean_std(frame, 'worst_robust_acc')
  columns['Notes'] = _notes(frame)
  return pd.DataFrame(columns)


def accuracy_display(frame: pd.DataFrame) -> pd.DataFrame:
  """The text of an `accuracy_frame`: Method, IPC, Seeds, Clean acc, '<ATTACK> <mode>'
  robust accuracy per attack and mode, 'CREI <mode>', 'RRM <mode>', 'AEM <mode>', Notes."""
  columns = {
    'Method': _methods(frame),
    'IPC': [str(i) for i in frame['ipc']],
    'Seeds': [str(n) for n in frame['num_seeds']],
    'Clean acc': _mean_std(frame, 'clean_acc'),
  }
  for column in _value_columns(frame, 'robust_acc/'):
    _, attack, mode = column.split('/')
    columns[f'{attack_title(attack)} {mode}'] = _mean_std(frame, column)
  for key, label in _METRIC_LABELS.items():
    for column in _value_columns(frame, f'{key}/'):
      columns[f'{label} {column.split("/")[1]}'] = _mean_std(frame, column)
  columns['Notes'] = _notes(frame)
  return pd.DataFrame(columns)

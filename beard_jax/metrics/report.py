"""Presentation of metric rows: the toolkit's `round(x, 2)` applied only here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from beard_jax.metrics.formulas import present_value

_ROUNDED = ('rr', 'ae', 'crei', 'clean_acc', 'clean_seconds', 'worst_robust_acc')
_ROUNDED_LISTS = ('attack_accs', 'attack_seconds')


def present_row(row: Mapping, digits: int | None = 2) -> dict:
  """A copy of `row` with every metric, accuracy and time rounded to `digits` decimals.

  NaN becomes None so that the result is valid JSON.
  """
  out = dict(row)
  for key in _ROUNDED:
    if key in out:
      out[key] = present_value(out[key], digits)
  for key in _ROUNDED_LISTS:
    if key in out:
      out[key] = [present_value(v, digits) for v in out[key]]
  return out


def summary_row(row: Mapping, digits: int | None = 2) -> dict:
  """The fields a reader of the toolkit output looks at, rounded: RR, AE, CREI per mode."""
  return {
    'method': row['method'],
    'dataset': row['dataset'],
    'protocol': row['protocol'],
    'training': row['training'],
    'ipc': row['ipc'],
    'mode': 'targeted' if row['targeted'] else 'untargeted',
    'adversary': row['adversary'],
    'RR': present_value(row['rr'], digits),
    'AE': present_value(row['ae'], digits),
    'CREI': present_value(row['crei'], digits),
    'clean_acc': present_value(row['clean_acc'], digits),
    'clean_seconds': present_value(row['clean_seconds'], digits),
    'worst_robust_acc': present_value(row['worst_robust_acc'], digits),
    'worst_attack': row['worst_attack'],
    'attacks': sorted(set(row['attacks'])),
    'ipcs': row['ipcs'],
    'num_seeds': row['num_seeds'],
    'degenerate': list(row['degenerate']),
  }


def summarize(rows: Iterable[Mapping], digits: int | None = 2) -> list[dict]:
  """`summary_row` of each row; `digits=None` keeps full precision."""
  return [summary_row(row, digits) for row in rows]

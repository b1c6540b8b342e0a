"""BEARD's robustness metrics as pure functions of accuracies and times (PROTOCOL.md §6).

Every accuracy is a percentage in [0, 100] and every time is in seconds. The functions
return full-precision Python floats; rounding to two decimals belongs to presentation
(`present_value`).

- RR (`beard`) = 100 · (mean(a) − min(a)) / (C − min(a)); 0 when C = min(a).
- RR (`rome`) = 100 · (1 − (C − mean(a)) · (C − min(a)) / C²).
- RR (`rome+`) = `rome` − 0.01 · mean_i(max(a_i − C, 0)) · 100.
- AE = 100 · (mean(t) − T0) / (max(t) − T0); 0 when max(t) = T0.
- CREI = α · RR + (1 − α) · AE.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

CLEAN_TIME_RULES = ('toolkit', 'paper')


def _mean(values: Sequence[float]) -> float:
  return math.fsum(values) / len(values)


def _check_nonempty(attack_values: Sequence[float], what: str) -> None:
  if len(attack_values) == 0:
    raise ValueError(f'{what}: need at least one attack, got none')


def rr_beard(clean_acc: float, attack_accs: Sequence[float]) -> float:
  """BEARD's robustness ratio, 100 · (mean(a) − min(a)) / (C − min(a)).

  Equal to 100 · (1 − mean(ASR) / max(ASR)) with ASR_i = C − a_i.

  Args:
    clean_acc: C, clean accuracy in percent.
    attack_accs: a_i, accuracy under each attack in percent; at least one.

  Returns:
    RR in percent; 0 when C == min(a). One attack always gives 0.
  """
  _check_nonempty(attack_accs, 'rr_beard')
  worst = min(attack_accs)
  if clean_acc == worst:
    return 0.0
  return 100.0 * (_mean(attack_accs) - worst) / (clean_acc - worst)


def rr_rome(clean_acc: float, attack_accs: Sequence[float]) -> float:
  """ROME's robustness ratio, 100 · (1 − (C − mean(a)) · (C − min(a)) / C²).

  Returns NaN when C == 0 (the ratio is undefined there).
  """
  _check_nonempty(attack_accs, 'rr_rome')
  if clean_acc == 0:
    return math.nan
  mean_gap = clean_acc - _mean(attack_accs)
  worst_gap = clean_acc - min(attack_accs)
  return 100.0 * (1.0 - mean_gap * worst_gap / clean_acc**2)


def rr_rome_plus(clean_acc: float, attack_accs: Sequence[float]) -> float:
  """`rome` minus the mean amount (percentage points) by which attacks exceed C."""
  rome = rr_rome(clean_acc, attack_accs)
  excess = _mean([max(a - clean_acc, 0.0) for a in attack_accs])
  return rome - 0.01 * excess * 100.0


RR_FUNCTIONS: dict[str, Callable[[float, Sequence[float]], float]] = {
  'beard': rr_beard,
  'rome': rr_rome,
  'rome+': rr_rome_plus,
}


def get_rr_fn(metrics_type: str) -> Callable[[float, Sequence[float]], float]:
  """Returns the RR function of `metrics_type` ('beard', 'rome' or 'rome+')."""
  if metrics_type not in RR_FUNCTIONS:
    raise ValueError(f'unknown metrics_type {metrics_type!r}; choose from {sorted(RR_FUNCTIONS)}')
  return RR_FUNCTIONS[metrics_type]


def robustness_ratio(
  clean_acc: float, attack_accs: Sequence[float], metrics_type: str = 'beard'
) -> float:
  """RR in percent under `metrics_type` (see the module docstring)."""
  return get_rr_fn(metrics_type)(clean_acc, attack_accs)


def attack_efficiency(clean_seconds: float, attack_seconds: Sequence[float]) -> float:
  """AE = 100 · (mean(t) − T0) / (max(t) − T0); 0 when max(t) == T0.

  Args:
    clean_seconds: T0, the clean-pass time in seconds.
    attack_seconds: t_i, one full-pass time per attack in seconds; at least one.

  Returns:
    AE in percent. One attack always gives 100 (unless its time equals T0).
  """
  _check_nonempty(attack_seconds, 'attack_efficiency')
  slowest = max(attack_seconds)
  if slowest == clean_seconds:
    return 0.0
  return 100.0 * (_mean(attack_seconds) - clean_seconds) / (slowest - clean_seconds)


def crei(rr: float, ae: float, alpha: float = 0.5) -> float:
  """CREI = α · RR + (1 − α) · AE, α in [0, 1]."""
  check_alpha(alpha)
  return alpha * rr + (1.0 - alpha) * ae


def check_alpha(alpha: float) -> None:
  if not 0.0 <= alpha <= 1.0:
    raise ValueError(f'alpha must lie in [0, 1], got {alpha!r}')


def check_clean_time_rule(rule: str) -> None:
  if rule not in CLEAN_TIME_RULES:
    raise ValueError(f'unknown clean_time {rule!r}; choose from {sorted(CLEAN_TIME_RULES)}')


def diagnose(
  clean_acc: float,
  attack_accs: Sequence[float],
  clean_seconds: float,
  attack_seconds: Sequence[float],
  attack_names: Sequence[str],
  metrics_type: str = 'beard',
) -> list[str]:
  """Names the degenerate cases that make RR/AE misleading; [] when there are none.

  Each note is `'<code>: <explanation>'` with a stable code: `single_attack`,
  `clean_equals_min_acc`, `attack_above_clean`, `clean_acc_zero`,
  `max_time_equals_clean_time`, `attack_faster_than_clean`.
  """
  notes = []
  if len(attack_accs) == 1:
    notes.append('single_attack: with one attack beard RR is always 0 and AE always 100')
  if clean_acc == min(attack_accs):
    notes.append(
      f'clean_equals_min_acc: C == min(a) == {clean_acc!r}; '
      + ('beard RR set to 0' if metrics_type == 'beard' else 'no attack lowered accuracy')
    )
  above = [n for n, a in zip(attack_names, attack_accs, strict=True) if a > clean_acc]
  if above:
    notes.append(f'attack_above_clean: {sorted(set(above))} raise accuracy above C, ratios break')
  if clean_acc == 0 and metrics_type in ('rome', 'rome+'):
    notes.append('clean_acc_zero: C == 0, rome RR is undefined (NaN)')
  if max(attack_seconds) == clean_seconds:
    notes.append(f'max_time_equals_clean_time: max(t) == T0 == {clean_seconds!r}; AE set to 0')
  faster = [n for n, t in zip(attack_names, attack_seconds, strict=True) if t < clean_seconds]
  if faster:
    notes.append(
      f'attack_faster_than_clean: {sorted(set(faster))} take less than T0, AE leaves [0, 100]'
    )
  return notes


def present_value(value: float | None, digits: int | None = 2) -> float | None:
  """`round(value, digits)` as the toolkit prints it; None for None or NaN.

  `digits=None` keeps full precision (NaN still becomes None, for valid JSON).
  """
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return None
  return value if digits is None else round(value, digits)

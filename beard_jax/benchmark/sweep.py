"""`--sweep`: one attack hyperparameter over a list of values, one record per point.

  --sweep=eps:2/255,4/255,6/255,8/255,10/255     robust accuracy against ε
  --sweep=steps:1,2,4,8,16                        and against the number of steps

Every planned attack whose hyperparameters include the swept name runs once per
point besides its ordinary cell (BEARD's `PGD_e2 … PGD_e10` and `PGD_s2 … PGD_s10`
branches are `pgd` swept over `eps` and `steps`). A point's cell is the ordinary cell
plus `sweep='<name>=<value as given>'`; its record holds the numeric value in
`hparams`. Points never enter RR/AE/CREI: they form the curves of the report
(`beard_jax.metrics.curves`). Where the attack takes the hyperparameter as a traced
value (`AttackSpec.traced_hparams`), all points of a (model, attack, mode) share one
compiled program.
"""

from __future__ import annotations

import fractions
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

from beard_jax.errors import ConfigError


class SweepPoint(NamedTuple):
  """One value of a sweep: `text` as the user wrote it (`2/255`), `value` as a number."""

  text: str
  value: float | int


class Sweep(NamedTuple):
  """`name` (an attack hyperparameter) over `points`, in the order given."""

  name: str
  points: tuple[SweepPoint, ...]

  def label(self, point: SweepPoint) -> str:
    """The point's cell label, e.g. `eps=2/255`."""
    return f'{self.name}={point.text}'


def _number(text: str, flag: str) -> float:
  try:
    value = float(fractions.Fraction(text))
  except (ValueError, ZeroDivisionError):
    raise ConfigError(f'{flag}: {text!r} is not a number or a fraction like 2/255') from None
  if not math.isfinite(value) or value < 0:
    raise ConfigError(f'{flag}: {text!r} must be a finite number >= 0')
  return value


def parse_sweep(text: str) -> Sweep | None:
  """`'eps:2/255,4/255'` → `Sweep('eps', …)`; `''` → None.

  Raises:
    ConfigError: no `name:` prefix, no values, a repeated value, or a value that is
      not a non-negative number or fraction.
  """
  if not text.strip():
    return None
  name, sep, values = text.partition(':')
  name = name.strip()
  flag = f'--sweep={text}'
  if not sep or not name:
    raise ConfigError(f'{flag}: expected <hyperparameter>:<v1>,<v2>,... such as eps:2/255,4/255')
  points = []
  for item in values.split(','):
    if item.strip():
      points.append(SweepPoint(item.strip(), _number(item.strip(), flag)))
  if not points:
    raise ConfigError(f'{flag}: no values after {name}:')
  numbers = [p.value for p in points]
  if len(set(numbers)) != len(numbers):
    raise ConfigError(f'{flag}: a value is repeated')
  return Sweep(name, tuple(points))


def typed_sweep(sweep: Sweep, default: Any, attack: str) -> Sweep:
  """The sweep with values of the hyperparameter's type (its default's): ints stay ints.

  Raises:
    ConfigError: a fractional value for an integer hyperparameter such as `steps`.
  """
  if isinstance(default, bool) or not isinstance(default, int | float):
    raise ConfigError(
      f'--sweep: {attack} hyperparameter {sweep.name!r} is {default!r}, not a number to sweep'
    )
  if isinstance(default, float):
    return sweep
  points = []
  for point in sweep.points:
    if point.value != int(point.value):
      raise ConfigError(f'--sweep: {attack} {sweep.name} takes integers, got {point.text}')
    points.append(point._replace(value=int(point.value)))
  return sweep._replace(points=tuple(points))


def swept_attacks(
  sweep: Sweep, hparams: Mapping[tuple[str, bool], Mapping[str, Any]]
) -> dict[tuple[str, bool], Sweep]:
  """{(attack, targeted): its typed sweep} for every planned pair that has the hyperparameter.

  Raises:
    ConfigError: no planned attack has the hyperparameter (the message lists theirs).
  """
  swept = {
    pair: typed_sweep(sweep, settings[sweep.name], pair[0])
    for pair, settings in hparams.items()
    if sweep.name in settings
  }
  if not swept:
    names = sorted({name for settings in hparams.values() for name in settings})
    raise ConfigError(
      f'--sweep: no attack of --attacks has a hyperparameter {sweep.name!r}; theirs: '
      f'{", ".join(names) or "none (only clean)"}'
    )
  return swept

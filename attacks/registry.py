"""The attack registry: one `AttackSpec` per attack, and the functions that read it.

A spec says everything the rest of the benchmark needs to know about an attack
without building it: its factory, the modes it defines, and its scheduling knobs
(hyperparameters such as `slots` that change speed and float rounding, never the
threat model) with how their per-backend defaults resolve. The planner, the
protocols and the metrics read the specs; nothing else imports attack modules to
learn about them.

Every factory takes keyword hparams and returns
`attack(apply_fn, params, x, y, key) -> x_adv` (see docs/CONTRACTS.md); with
`targeted=True`, y holds the target labels. The attack is a pure function; jit it
with `apply_fn` static, e.g. `jax.jit(attack, static_argnums=0)`, or vmap it over
stacked params.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax.numpy as jnp

from attacks import deepfool, spsa, square, work_queue
from attacks.apgd import make_apgd_ce, make_apgd_dlr, make_apgd_t
from attacks.autoattack import make_autoattack
from attacks.base import Attack
from attacks.cw import make_cw
from attacks.fab import make_fab_t
from attacks.fgsm import make_fgsm
from attacks.pgd import make_pgd, make_pgd_l2

MODES = ('untargeted', 'targeted')
BOTH_MODES = frozenset(MODES)


class AttackSpec(NamedTuple):
  """What the benchmark knows about one attack.

  Attributes:
    factory: keyword hparams → `attack(apply_fn, params, x, y, key) -> x_adv`.
    modes: the modes the attack defines (a subset of `MODES`).
    schedule: scheduling knob → `default(batch_size) -> value`, used when the knob is
      left None; the resolved value is recorded with the results, since ties can
      depend on it.
    summary: one line for `--help` and errors.
    traced: hyperparameters the factory accepts as traced JAX scalars (used only in
      arithmetic and loop bounds), so one compiled program serves every value of a
      sweep; the others are compiled once per value.
  """

  factory: Callable[..., Attack]
  modes: frozenset[str]
  schedule: Mapping[str, Callable[[int], Any]]
  summary: str
  traced: frozenset[str] = frozenset()


_SQUARE_SLOTS = {'slots': square.default_slots}
_CHUNK = {'chunk': work_queue.default_chunk}
_PGD_TRACED = frozenset({'eps', 'step_size', 'steps'})

SPECS: dict[str, AttackSpec] = {
  'fgsm': AttackSpec(
    make_fgsm, BOTH_MODES, {}, 'FGSM, one L∞ gradient-sign step', frozenset({'eps'})
  ),
  'pgd': AttackSpec(make_pgd, BOTH_MODES, {}, 'PGD, L∞ projected gradient steps', _PGD_TRACED),
  'pgd_l2': AttackSpec(
    make_pgd_l2, BOTH_MODES, {}, 'PGD, L2 projected gradient steps', _PGD_TRACED
  ),
  'cw': AttackSpec(make_cw, BOTH_MODES, {}, 'Carlini-Wagner L2, Adam on tanh space'),
  'deepfool': AttackSpec(
    deepfool.make_deepfool,
    BOTH_MODES,
    {'slots': lambda batch: deepfool.default_slots()},
    'DeepFool, minimal L2 steps to the nearest boundary (or to the target)',
  ),
  'apgd_ce': AttackSpec(make_apgd_ce, BOTH_MODES, _CHUNK, 'Auto-PGD on cross-entropy, L∞'),
  'apgd_dlr': AttackSpec(make_apgd_dlr, BOTH_MODES, _CHUNK, 'Auto-PGD on the DLR loss, L∞'),
  'apgd_t': AttackSpec(
    make_apgd_t, BOTH_MODES, _CHUNK, 'Auto-PGD on targeted DLR (ranked targets, or the given one)'
  ),
  'fab_t': AttackSpec(
    make_fab_t,
    BOTH_MODES,
    _CHUNK,
    'FAB, minimal L∞ boundary steps (ranked targets or the given one)',
  ),
  'square': AttackSpec(
    square.make_square, BOTH_MODES, _SQUARE_SLOTS, 'Square, score-based random search, L∞'
  ),
  'spsa': AttackSpec(
    spsa.make_spsa,
    BOTH_MODES,
    {'max_batch_size': spsa.default_directions_per_pass},
    'SPSA, gradient-free Adam on estimated gradients',
  ),
  'autoattack': AttackSpec(
    make_autoattack,
    BOTH_MODES,
    {**_SQUARE_SLOTS, **_CHUNK},
    'AutoAttack: APGD-CE, APGD-T, FAB-T, Square; first success per sample',
  ),
}

ATTACKS: dict[str, Callable[..., Attack]] = {name: spec.factory for name, spec in SPECS.items()}
ATTACK_NAMES = tuple(sorted(SPECS))


def get_spec(name: str) -> AttackSpec:
  """The spec of attack `name`; an unknown name raises naming the valid choices."""
  if name not in SPECS:
    raise ValueError(f'unknown attack {name!r}; choose from {list(ATTACK_NAMES)}')
  return SPECS[name]


def _factory_hparams(factory: Callable) -> list[str]:
  return [
    p.name
    for p in inspect.signature(factory).parameters.values()
    if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
  ]


def check_hparams(name: str, hparams: Mapping[str, Any]) -> None:
  """Raises ValueError unless `hparams` are keyword arguments of the attack's factory and
  their `targeted` names a mode the attack defines."""
  spec = get_spec(name)
  valid = _factory_hparams(spec.factory)
  unknown = sorted(set(hparams) - set(valid))
  if unknown:
    raise ValueError(f'unknown hparams {unknown} for attack {name!r}; valid: {sorted(valid)}')
  mode = 'targeted' if hparams.get('targeted') else 'untargeted'
  if mode not in spec.modes:
    raise ValueError(f'attack {name!r} has no {mode} mode; it defines {sorted(spec.modes)}')


def resolve_hparams(name: str, hparams: Mapping[str, Any], batch_size: int) -> dict[str, Any]:
  """`hparams` with every scheduling knob left None (or absent) set to its backend default.

  Args:
    name: an attack name.
    hparams: the factory's keyword arguments (`targeted` among them for targeted runs).
    batch_size: the attack batch the knobs are resolved for.

  Returns:
    A new dict: `hparams` plus the resolved knobs; validated by `check_hparams`.
  """
  spec = get_spec(name)
  resolved = dict(hparams)
  for knob, default in spec.schedule.items():
    if resolved.get(knob) is None:
      resolved[knob] = default(batch_size)
  check_hparams(name, resolved)
  return resolved


def get_attack(name: str, **hparams: Any) -> Attack:
  """Builds attack `name` with `hparams` (the factory's keyword arguments).

  Args:
    name: a key of `SPECS`.
    **hparams: the factory's keyword arguments; unspecified ones take its defaults.

  Returns:
    `attack(apply_fn, params, x, y, key) -> x_adv`.

  Raises:
    ValueError: an unknown attack name, an hparam the factory does not take, or a mode
      the attack does not define.
  """
  check_hparams(name, hparams)
  return SPECS[name].factory(**hparams)


def traced_attack_maker(name: str, hparams: Mapping[str, Any], swept: str) -> Callable:
  """`make_attack(value)`: attack `name` with `hparams`, `swept` set to a traced scalar.

  For one compiled program over every value of a sweep (`evaluate.runner.compile_attack`):
  `value` arrives as a float32 tracer and is cast to int32 where the hyperparameter is an
  int (its value in `hparams`, else the factory's default).

  Raises:
    ValueError: `swept` is not among the attack's `traced` hyperparameters.
  """
  traced = get_spec(name).traced
  if swept not in traced:
    raise ValueError(f'attack {name!r} cannot take {swept!r} traced; it can: {sorted(traced)}')
  fixed = hparams.get(swept, inspect.signature(get_spec(name).factory).parameters[swept].default)
  integer = isinstance(fixed, int) and not isinstance(fixed, bool)

  def make_attack(value):
    value = jnp.asarray(value)
    return get_attack(name, **{**hparams, swept: value.astype(jnp.int32) if integer else value})

  return make_attack

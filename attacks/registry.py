"""The attack registry: a plain dict name → factory, and `get_attack`.

Every factory takes keyword hparams and returns
`attack(apply_fn, params, x, y, key) -> x_adv` (see docs/CONTRACTS.md). The
attack is a pure function; jit it with `apply_fn` static, e.g.
`jax.jit(attack, static_argnums=0)`, or vmap it over stacked params.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from attacks.apgd import make_apgd_ce, make_apgd_dlr, make_apgd_t
from attacks.autoattack import make_autoattack
from attacks.cw import make_cw
from attacks.deepfool import make_deepfool
from attacks.fab import make_fab_t
from attacks.fgsm import make_fgsm
from attacks.pgd import make_pgd, make_pgd_l2
from attacks.spsa import make_spsa
from attacks.square import make_square

Attack = Callable[..., Any]

ATTACKS: dict[str, Callable[..., Attack]] = {
  'fgsm': make_fgsm,
  'pgd': make_pgd,
  'pgd_l2': make_pgd_l2,
  'cw': make_cw,
  'deepfool': make_deepfool,
  'apgd_ce': make_apgd_ce,
  'apgd_dlr': make_apgd_dlr,
  'apgd_t': make_apgd_t,
  'fab_t': make_fab_t,
  'square': make_square,
  'spsa': make_spsa,
  'autoattack': make_autoattack,
}

ATTACK_NAMES = tuple(sorted(ATTACKS))


def get_attack(name: str, **hparams: Any) -> Attack:
  """Builds attack `name` with `hparams` (the factory's keyword arguments).

  Args:
    name: a key of `ATTACKS`.
    **hparams: the factory's keyword arguments; unspecified ones take its defaults.

  Returns:
    `attack(apply_fn, params, x, y, key) -> x_adv`.

  Raises:
    ValueError: an unknown attack name or an hparam the factory does not take.
  """
  if name not in ATTACKS:
    raise ValueError(f'unknown attack {name!r}; choose from {sorted(ATTACKS)}')
  factory = ATTACKS[name]
  valid = [
    p.name
    for p in inspect.signature(factory).parameters.values()
    if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
  ]
  unknown = sorted(set(hparams) - set(valid))
  if unknown:
    raise ValueError(f'unknown hparams {unknown} for attack {name!r}; valid: {sorted(valid)}')
  return factory(**hparams)

"""Adversarial attacks as pure, jit- and vmap-compatible batch functions.

`get_attack(name, **hparams)` returns `attack(apply_fn, params, x, y, key) -> x_adv`;
`get_spec(name)` says which modes an attack defines and how its scheduling knobs resolve.
"""

from attacks.registry import (
  ATTACK_NAMES,
  MODES,
  AttackSpec,
  check_hparams,
  get_attack,
  get_spec,
  resolve_hparams,
  traced_attack_maker,
)

__all__ = [
  'ATTACK_NAMES',
  'MODES',
  'AttackSpec',
  'check_hparams',
  'get_attack',
  'get_spec',
  'resolve_hparams',
  'traced_attack_maker',
]

"""Adversarial attacks as pure, jit- and vmap-compatible batch functions.

`get_attack(name, **hparams)` returns `attack(apply_fn, params, x, y, key) -> x_adv`.
"""

from attacks.registry import ATTACK_NAMES, get_attack

__all__ = ['ATTACK_NAMES', 'get_attack']

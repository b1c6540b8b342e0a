"""What every attack module shares: the attack type and the first-success-wins rule.

An ensemble or a loop of runs (restarts, target classes, AutoAttack's stages) keeps,
per sample, the point of the first run that fooled it; later runs attack only the
samples still robust. `keep_first_success` is that rule, written once.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Attack = Callable[..., jax.Array]
"""`attack(apply_fn, params, x [B, H, W, C], y [B] int32, key) -> x_adv [B, H, W, C]`."""


def keep_first_success(
  x_out: jax.Array, robust: jax.Array, adv: jax.Array, fooled: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """Takes `adv` where a still-robust sample is now fooled.

  Args:
    x_out: [B, ...] the points kept so far.
    robust: bool [B], samples no earlier run fooled.
    adv: [B, ...] this run's points.
    fooled: bool [B], this run fooled the sample.

  Returns:
    `(x_out, robust)` updated: newly fooled samples take `adv` and leave `robust`.
  """
  take = robust & fooled
  mask = take.reshape(take.shape + (1,) * (adv.ndim - 1))
  return jnp.where(mask, adv, x_out), robust & ~take

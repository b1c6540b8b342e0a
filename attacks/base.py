"""What every attack module shares: the attack type, its input check, first-success-wins,
per-sample random keys.

An ensemble or a loop of runs (restarts, target classes, AutoAttack's stages) keeps,
per sample, the point of the first run that fooled it; later runs attack only the
samples still robust. `keep_first_success` is that rule, written once, and `Kept` the
loop state that carries it.

An attack that runs its samples in a work queue or in chunks draws each sample's random
numbers from the sample's own key (`sample_keys`), so a sample's draws do not depend on
which other samples share its batch or chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

Attack = Callable[..., jax.Array]
"""`attack(apply_fn, params, x [B, H, W, C], y [B] int32, key) -> x_adv [B, H, W, C]`."""


def check_batch(x: jax.Array, y: jax.Array) -> None:
  """Checks an attack's inputs (at trace time, so free under jit).

  Args:
    x: images, [B, H, W, C].
    y: labels or targets, [B].

  Raises:
    AssertionError: x is not rank 4, or y is not [B].
  """
  chex.assert_rank(x, 4)
  chex.assert_shape(y, x.shape[:1])


def is_success(logits: jax.Array, y: jax.Array, targeted: bool) -> jax.Array:
  """bool [B]: the prediction of logits [B, K] reaches the target y (targeted) or leaves y."""
  pred = jnp.argmax(logits, axis=-1)
  return pred == y if targeted else pred != y


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


class Kept(NamedTuple):
  """The loop state of a run of attacks where the first success per sample wins.

  Attributes:
    x_out: [B, H, W, C], the points kept so far (the input where nothing succeeded yet).
    robust: bool [B], samples no run has fooled yet.
  """

  x_out: jax.Array
  robust: jax.Array

  def update(self, adv: jax.Array, fooled: jax.Array) -> Kept:
    """`keep_first_success` on this state: take adv [B, ...] where a robust sample is `fooled`."""
    return Kept(*keep_first_success(self.x_out, self.robust, adv, fooled))


def sample_keys(key: jax.Array, batch: int) -> jax.Array:
  """Per-sample keys [B]: sample i's is `fold_in(key, i)`."""
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(batch))


def fold_each(keys: jax.Array, data) -> jax.Array:
  """`fold_in(k, data)` for each of the per-sample keys [B] (a run number, a target index)."""
  return jax.vmap(lambda k: jax.random.fold_in(k, data))(keys)


def uniform_each(keys: jax.Array, shape: tuple[int, ...], minval: float, maxval: float):
  """float32 [B, *shape]: row i uniform on [minval, maxval) from keys[i]."""
  return jax.vmap(lambda k: jax.random.uniform(k, shape, jnp.float32, minval, maxval))(keys)

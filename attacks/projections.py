"""Shared geometry for attacks: per-sample norms, ε-ball projections and the box.

Every function works on a batch `[B, ...]` and treats each sample on its own
(norms and projections are over all non-batch axes), so the attacks built on
them can be `jax.vmap`ped over stacked parameters or samples.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike


def _per_sample(values: jax.Array, like: jax.Array) -> jax.Array:
  """[B] → [B, 1, ..., 1], broadcastable against `like` [B, ...]."""
  return values.reshape((-1,) + (1,) * (like.ndim - 1))


def l2_norm(x: ArrayLike) -> jax.Array:
  """Per-sample L2 norm.

  Args:
    x: [B, ...] float.

  Returns:
    [B] float, the Euclidean norm of each flattened sample.
  """
  x = jnp.asarray(x)
  return jnp.sqrt(jnp.sum(jnp.square(x.reshape(x.shape[0], -1)), axis=1))


def linf_norm(x: ArrayLike) -> jax.Array:
  """Per-sample L∞ norm: [B, ...] → [B]."""
  x = jnp.asarray(x)
  return jnp.max(jnp.abs(x.reshape(x.shape[0], -1)), axis=1)


def clip_box(x: ArrayLike, clip_min: float = 0.0, clip_max: float = 1.0) -> jax.Array:
  """Clamps every value into the box [clip_min, clip_max] (torch.clamp semantics)."""
  return jnp.clip(jnp.asarray(x), clip_min, clip_max)


def project_linf(x_adv: ArrayLike, x: ArrayLike, eps: float) -> jax.Array:
  """Projects `x_adv` onto the L∞ ball of radius `eps` around `x`.

  Args:
    x_adv: [B, ...] float, the candidate points.
    x: [B, ...] float, the centres.
    eps: radius, ≥ 0, in the units of `x`.

  Returns:
    [B, ...] float, `x + clip(x_adv - x, -eps, eps)`.
  """
  x = jnp.asarray(x)
  return x + jnp.clip(jnp.asarray(x_adv) - x, -eps, eps)


def project_l2(x_adv: ArrayLike, x: ArrayLike, eps: float) -> jax.Array:
  """Projects `x_adv` onto the L2 ball of radius `eps` around `x`, per sample.

  Follows torchattacks' PGDL2: `delta *= min(eps / ||delta||, 1)`. Where the
  perturbation is exactly zero the factor is 1 (torchattacks gets 0/0 = NaN
  there when eps = 0).

  Args:
    x_adv: [B, ...] float, the candidate points.
    x: [B, ...] float, the centres.
    eps: radius, ≥ 0.

  Returns:
    [B, ...] float, `x + delta * factor`.
  """
  x = jnp.asarray(x)
  delta = jnp.asarray(x_adv) - x
  norms = l2_norm(delta)
  safe = jnp.where(norms > 0, norms, 1.0)
  factor = jnp.where(norms > 0, jnp.minimum(eps / safe, 1.0), 1.0)
  return x + delta * _per_sample(factor, delta)


def normalize_l2(g: ArrayLike, eps_for_division: float = 1e-10) -> jax.Array:
  """Per-sample L2 direction `g / (||g|| + eps_for_division)` (torchattacks' PGDL2 step).

  Args:
    g: [B, ...] float, e.g. a loss gradient.
    eps_for_division: added to the norm (not max'ed with it), as torchattacks does.

  Returns:
    [B, ...] float with per-sample norm just under 1 (0 where g is 0).
  """
  g = jnp.asarray(g)
  return g / _per_sample(l2_norm(g) + eps_for_division, g)


def random_linf(key: jax.Array, shape: tuple[int, ...], eps: float) -> jax.Array:
  """Uniform noise in [-eps, eps] (torchattacks' PGD random start), float32."""
  return jax.random.uniform(key, shape, jnp.float32, -eps, eps)


def random_l2(key: jax.Array, shape: tuple[int, ...], eps: float) -> jax.Array:
  """torchattacks' PGDL2 random start: a Gaussian direction scaled to radius `r·eps`, r ~ U(0, 1).

  Args:
    key: a `jax.random` key.
    shape: [B, ...], the batch shape.
    eps: the ball's radius.

  Returns:
    [B, ...] float32 perturbations with per-sample L2 norm r·eps.
  """
  direction_key, radius_key = jax.random.split(key)
  delta = jax.random.normal(direction_key, shape, jnp.float32)
  radius = jax.random.uniform(radius_key, (shape[0],), jnp.float32)
  scale = radius / l2_norm(delta) * eps
  return delta * _per_sample(scale, delta)

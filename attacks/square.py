"""Square Attack, L∞: a score-based random search (no gradients).

Reference: M. Andriushchenko, F. Croce, N. Flammarion and M. Hein, "Square Attack: a
query-efficient black-box adversarial attack via random search", ECCV 2020, Algorithm 1/2.

- Start: x + ε·s with s ∈ {−1, 1} drawn per (column, channel): vertical stripes.
- Each iteration proposes, per sample, a square window of side h(i) = max(round(√(p(i)·H·W)), 1)
  at a random position, with a random sign per channel, set to the ε-ball's vertex there;
  the proposal is kept when the margin loss z_y − max_{j≠y} z_j decreases (or the point
  becomes misclassified). A sample stops once misclassified (its margin ≤ 0).
- p(i) halves at iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 from p_init = 0.8.
  `rescale_schedule=True` stretches that 10,000-iteration schedule to `n_queries` (torchattacks'
  default `resc_schedule=True`); the AutoAttack authors' own ensemble uses `False`.

Departures of torchattacks 3.5.1 (and the authors' AutoAttack code) from the paper, and ours:
- They draw ONE window position and sign per iteration for the whole batch; the paper and this
  module draw them per sample (so results are equal in distribution to the paper, not to
  torchattacks draw for draw).
- The window's top-left corner is drawn in [0, H − h) (never at H − h); kept here.
- The box is [0, 1] there, `clip_min`/`clip_max` here.
- n_queries iterations follow the initial query (n_queries + 1 model queries per sample).
- Here the loop is a `lax.while_loop` that stops early once every active sample is fooled.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from attacks import losses

Attack = Callable[..., jax.Array]

_SCHEDULE_ENDS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def p_selection(i: jax.Array, p_init: float, n_queries: int, rescale: bool) -> jax.Array:
  """The fraction p of pixels the window covers at iteration i (0-based): p_init / 2^m."""
  it = jnp.floor(i / n_queries * 10000).astype(jnp.int32) if rescale else i
  halvings = sum((it > end).astype(jnp.int32) for end in _SCHEDULE_ENDS)
  return p_init / (2.0**halvings)


def _margin_to_minimise(logits, y, targeted):
  # Untargeted: z_y − max_{j≠y} z_j; targeted: max_{j≠t} z_j − z_t. ≤ 0 means success.
  m = losses.margin(logits, y)
  return -m if not targeted else m


def square_masked(
  apply_fn,
  params,
  x,
  y,
  key,
  active,
  *,
  eps: float,
  n_queries: int,
  p_init: float,
  rescale_schedule: bool,
  targeted: bool,
  clip_min: float,
  clip_max: float,
) -> tuple[jax.Array, jax.Array]:
  """Square attack on the points where `active` [B]; returns `(x_adv, still_robust)`."""
  batch, height, width, channels = x.shape
  logits_clean = apply_fn(params, x)
  active = active & (_margin_to_minimise(logits_clean, y, targeted) > 0)
  key_init, key_loop = jax.random.split(key)
  stripes = jnp.sign(jax.random.uniform(key_init, (batch, 1, width, channels), minval=-1.0))
  x_best = jnp.clip(x + eps * stripes, clip_min, clip_max)
  margin_best = _margin_to_minimise(apply_fn(params, x_best), y, targeted)
  rows = jnp.arange(height)[None, :, None, None]
  cols = jnp.arange(width)[None, None, :, None]

  def searching(m):
    return active & (m > 0)

  def cond(carry):
    i, _, m = carry
    return (i < n_queries) & jnp.any(searching(m))

  def body(carry):
    i, x_best, margin_best = carry
    k_pos, k_sign = jax.random.split(jax.random.fold_in(key_loop, i))
    p = p_selection(i, p_init, n_queries, rescale_schedule)
    side = jnp.maximum(jnp.round(jnp.sqrt(p * height * width)), 1.0).astype(jnp.int32)
    u = jax.random.uniform(k_pos, (2, batch))
    top = jnp.floor(u[0] * (height - side)).astype(jnp.int32)[:, None, None, None]
    left = jnp.floor(u[1] * (width - side)).astype(jnp.int32)[:, None, None, None]
    window = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
    signs = jnp.sign(jax.random.uniform(k_sign, (batch, 1, 1, channels), minval=-1.0))
    x_new = x_best + jnp.where(window, 2.0 * eps * signs, 0.0)
    x_new = jnp.clip(jnp.clip(x_new, x - eps, x + eps), clip_min, clip_max)
    margin = _margin_to_minimise(apply_fn(params, x_new), y, targeted)
    accept = searching(margin_best) & ((margin < margin_best) | (margin <= 0))
    x_best = jnp.where(accept[:, None, None, None], x_new, x_best)
    return i + 1, x_best, jnp.where(accept, margin, margin_best)

  _, x_best, margin_best = jax.lax.while_loop(cond, body, (0, x_best, margin_best))
  fooled = active & (margin_best <= 0)
  return jnp.where(fooled[:, None, None, None], x_best, x), active & ~fooled


def make_square(
  eps: float = 8 / 255,
  n_queries: int = 5000,
  p_init: float = 0.8,
  rescale_schedule: bool = True,
  targeted: bool = False,
  clip_min: float = 0.0,
  clip_max: float = 1.0,
) -> Attack:
  """Square Attack, L∞, margin loss (see the module docstring).

  Args:
    eps: L∞ radius (8/255).
    n_queries: search iterations after the initial query (5000).
    p_init: initial fraction of pixels a window covers (0.8).
    rescale_schedule: stretch the p schedule to n_queries (torchattacks' True; AutoAttack's own
      code uses False).
    targeted: y are targets; the loss is max_{j≠t} z_j − z_t.
    clip_min, clip_max: the box (0, 1).

  Returns:
    `attack(apply_fn, params, x, y, key) -> x_adv`: x [B, H, W, C] float32, y int32 [B];
    x_adv the successful point, or x where the search failed.
  """
  if eps < 0 or n_queries < 0 or not 0 < p_init <= 1:
    raise ValueError(
      f'need eps >= 0, n_queries >= 0, 0 < p_init <= 1; found {eps}, {n_queries}, {p_init}'
    )

  def attack(apply_fn, params, x, y, key) -> jax.Array:
    x = jnp.asarray(x, jnp.float32)
    y = jnp.asarray(y, jnp.int32)
    x_adv, _ = square_masked(
      apply_fn,
      params,
      x,
      y,
      key,
      jnp.ones(x.shape[:1], bool),
      eps=eps,
      n_queries=n_queries,
      p_init=p_init,
      rescale_schedule=rescale_schedule,
      targeted=targeted,
      clip_min=clip_min,
      clip_max=clip_max,
    )
    return x_adv

  return attack

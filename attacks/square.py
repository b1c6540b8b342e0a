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
- Each sample draws from its own key (the batch key folded with the sample's index and its
  iteration), so a sample's search does not depend on which others share its batch.

Cost. Most samples are fooled within a few queries; the robust ones use all n_queries.
torchattacks queries only the samples still searching, so a fixed-shape loop over the
whole batch would pay batch × n_queries forward passes whenever one sample resists (on a
2-core CPU that was 0.32× torchattacks' speed, 50 images). Here the search is a work
queue inside one `lax.while_loop`: `slots` samples are in flight, and when one is fooled
or out of queries its slot takes the next searching sample, so the cost follows the sum
of the samples' own query counts. Measured on the BEARD DC checkpoint (`beard` protocol,
50 CIFAR-10 test images, 8 of them robust, 2-core CPU): the whole batch in flight 335 s
(under load; 175 s alone), 16 slots 82 s, 8 slots 75 s, 4 slots 71 s, 1 slot 68 s.
`CPU_SLOTS` is 4: within 4 % of 1 slot here, and it amortises each iteration's overhead
when more samples resist (adversarially trained models). On an accelerator the default
keeps the whole batch in flight, as measured on an H200 (`bench/RESULTS.md`).
A sample's search depends on the others only through float rounding: a convolution's
result can differ in the last bit with the batch it runs in, which can flip an accept
decision (with 1 slot, one of these 50 samples ended 0.06 away from its 16-slot result).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from attacks import losses
from attacks.base import Attack

_SCHEDULE_ENDS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
CPU_SLOTS = 4


def default_slots(batch: int) -> int:
  """Samples in flight when `slots` is None: `CPU_SLOTS` on a CPU, the whole batch elsewhere."""
  return CPU_SLOTS if jax.default_backend() == 'cpu' else batch


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
  slots: int | None = None,
) -> tuple[jax.Array, jax.Array]:
  """Square attack on the points where `active` [B]; returns `(x_adv, still_robust)`.

  A work queue of `slots` samples in flight (see the module docstring); each sample's
  random draws are keyed by its index and its own iteration, so the result depends on
  `slots` only through float rounding.
  """
  batch, height, width, channels = x.shape
  in_flight = min(default_slots(batch) if slots is None else slots, batch)
  key_init, key_loop = jax.random.split(key)
  stripes = jnp.sign(jax.random.uniform(key_init, (batch, 1, width, channels), minval=-1.0))
  x_start = jnp.clip(x + eps * stripes, clip_min, clip_max)
  # The two batched queries every sample makes first: the clean point and the stripes.
  active = active & (_margin_to_minimise(apply_fn(params, x), y, targeted) > 0)
  margin_start = _margin_to_minimise(apply_fn(params, x_start), y, targeted)
  searching = active & (margin_start > 0)
  queue = jnp.argsort(~searching, stable=True)  # searching samples first, in index order
  queue_length = jnp.sum(searching)
  sample_keys = jax.vmap(lambda j: jax.random.fold_in(key_loop, j))(jnp.arange(batch))
  rows = jnp.arange(height)[:, None]
  cols = jnp.arange(width)[None, :]

  def propose(sample_key, i, x_orig, x_best):
    """One sample's candidate [H, W, C] at its iteration i."""
    k_pos, k_sign = jax.random.split(jax.random.fold_in(sample_key, i))
    p = p_selection(i, p_init, n_queries, rescale_schedule)
    side = jnp.maximum(jnp.round(jnp.sqrt(p * height * width)), 1.0).astype(jnp.int32)
    u = jax.random.uniform(k_pos, (2,))
    top = jnp.floor(u[0] * (height - side)).astype(jnp.int32)
    left = jnp.floor(u[1] * (width - side)).astype(jnp.int32)
    window = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
    signs = jnp.sign(jax.random.uniform(k_sign, (1, 1, channels), minval=-1.0))
    x_new = x_best + jnp.where(window[:, :, None], 2.0 * eps * signs, 0.0)
    return jnp.clip(jnp.clip(x_new, x_orig - eps, x_orig + eps), clip_min, clip_max)

  def load(state, free):
    """Loads the next queued samples into the `free` slots [S]; others keep theirs."""
    taken, slot_index, slot_iter, x_best, margin_best = state
    rank = jnp.cumsum(free) - 1
    position = taken + rank
    fresh = free & (position < queue_length)
    index = jnp.where(fresh, queue[jnp.minimum(position, batch - 1)], -1)
    slot_index = jnp.where(free, index, slot_index)
    slot_iter = jnp.where(free, 0, slot_iter)
    taken = taken + jnp.sum(fresh)
    return taken, slot_index, slot_iter, x_best, margin_best

  def cond(state):
    return jnp.any(state[1] >= 0)

  def body(state):
    taken, slot_index, slot_iter, x_best, margin_best = state
    live = slot_index >= 0
    index = jnp.maximum(slot_index, 0)
    x_slot, best_slot = x[index], x_best[index]
    x_new = jax.vmap(propose)(sample_keys[index], slot_iter, x_slot, best_slot)
    margin = _margin_to_minimise(apply_fn(params, x_new), y[index], targeted)
    accept = live & ((margin < margin_best[index]) | (margin <= 0))
    write = jnp.where(accept, index, batch)  # out of range: dropped
    x_best = x_best.at[write].set(x_new, mode='drop')
    margin_best = margin_best.at[write].set(margin, mode='drop')
    slot_iter = slot_iter + 1
    done = live & ((margin_best[index] <= 0) | (slot_iter >= n_queries))
    return load((taken, slot_index, slot_iter, x_best, margin_best), done)

  empty = jnp.full((in_flight,), -1, jnp.int32)
  state = (jnp.int32(0), empty, jnp.zeros((in_flight,), jnp.int32), x_start, margin_start)
  state = load(state, jnp.full((in_flight,), n_queries > 0))
  _, _, _, x_best, margin_best = jax.lax.while_loop(cond, body, state)
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
  slots: int | None = None,
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
    slots: samples searched at once (the work queue of the module docstring); None
      takes `default_slots(batch)`. The result depends on it only through rounding.

  Returns:
    `attack(apply_fn, params, x, y, key) -> x_adv`: x [B, H, W, C] float32, y int32 [B];
    x_adv the successful point, or x where the search failed.
  """
  if eps < 0 or n_queries < 0 or not 0 < p_init <= 1:
    raise ValueError(
      f'need eps >= 0, n_queries >= 0, 0 < p_init <= 1; found {eps}, {n_queries}, {p_init}'
    )
  if slots is not None and slots < 1:
    raise ValueError(f'slots must be None or >= 1, got {slots}')

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
      slots=slots,
    )
    return x_adv

  return attack

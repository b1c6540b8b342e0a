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
queue (`attacks.work_queue`, as in DeepFool) inside one `lax.while_loop`: `slots` samples
are in flight, and when one is fooled or out of queries its slot takes the next searching
sample, so the cost follows the sum of the samples' own query counts.
`CPU_SLOTS` is 4: near the fastest measured on the 2-core CPU, and it amortises each
iteration's overhead when more samples resist (adversarially trained models). On an
accelerator the default keeps the whole batch in flight (both measured:
`bench/RESULTS.md`, "Scheduling defaults").
A sample's search depends on the others only through float rounding: a convolution's
result can differ in the last bit with the batch it runs in, which can flip an accept
decision.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from attacks import losses, work_queue
from attacks.base import Attack, check_batch, sample_keys
from attacks.work_queue import WorkQueue

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


class _Search(NamedTuple):
  """What the search needs besides its state (fixed for the whole loop).

  Attributes:
    eps, p_init, n_queries, rescale_schedule, targeted, clip_min, clip_max: as in `make_square`.
  """

  eps: float
  p_init: float
  n_queries: int
  rescale_schedule: bool
  targeted: bool
  clip_min: float
  clip_max: float


class _State(NamedTuple):
  """Square's loop state.

  Attributes:
    queue: which searching sample each of the S slots holds, and its iteration.
    x_best: [B, H, W, C] float32, each sample's best point so far.
    margin_best: [B] float32, its margin (≤ 0: fooled).
  """

  queue: WorkQueue
  x_best: jax.Array
  margin_best: jax.Array


def _margin_to_minimise(logits, y, targeted):
  # Untargeted: z_y − max_{j≠y} z_j; targeted: max_{j≠t} z_j − z_t. ≤ 0 means success.
  m = losses.margin(logits, y)
  return -m if not targeted else m


def _propose(search: _Search, sample_key, i, x_orig, x_best):
  """One sample's candidate [H, W, C] at its iteration i (x_orig, x_best [H, W, C])."""
  height, width, channels = x_orig.shape
  rows = jnp.arange(height)[:, None]
  cols = jnp.arange(width)[None, :]
  k_pos, k_sign = jax.random.split(jax.random.fold_in(sample_key, i))
  p = p_selection(i, search.p_init, search.n_queries, search.rescale_schedule)
  side = jnp.maximum(jnp.round(jnp.sqrt(p * height * width)), 1.0).astype(jnp.int32)
  u = jax.random.uniform(k_pos, (2,))
  top = jnp.floor(u[0] * (height - side)).astype(jnp.int32)
  left = jnp.floor(u[1] * (width - side)).astype(jnp.int32)
  window = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
  signs = jnp.sign(jax.random.uniform(k_sign, (1, 1, channels), minval=-1.0))
  x_new = x_best + jnp.where(window[:, :, None], 2.0 * search.eps * signs, 0.0)
  x_new = jnp.clip(x_new, x_orig - search.eps, x_orig + search.eps)
  return jnp.clip(x_new, search.clip_min, search.clip_max)


def _search_loop(apply_fn, params, x, y, keys, init: _State, search: _Search) -> _State:
  """Runs the queued samples' random searches to the end (fooled or out of queries).

  Args:
    apply_fn, params: the model.
    x: [B, H, W, C] clean inputs; y [B] int32 labels (targets).
    keys: [B] per-sample keys.
    init: the state after the initial queries, with the searching samples queued.
    search: the search's settings.

  Returns:
    The final state; `x_best`/`margin_best` hold every sample's best point.
  """
  batch = x.shape[0]

  def body(state: _State) -> _State:
    live, index = work_queue.held(state.queue)
    iteration = state.queue.steps
    x_new = jax.vmap(lambda *a: _propose(search, *a))(
      keys[index], iteration, x[index], state.x_best[index]
    )
    margin = _margin_to_minimise(apply_fn(params, x_new), y[index], search.targeted)
    accept = live & ((margin < state.margin_best[index]) | (margin <= 0))
    write = jnp.where(accept, index, batch)  # out of range: dropped
    x_best = state.x_best.at[write].set(x_new, mode='drop')
    margin_best = state.margin_best.at[write].set(margin, mode='drop')
    done = live & ((margin_best[index] <= 0) | (iteration + 1 >= search.n_queries))
    return _State(work_queue.refill(state.queue, done), x_best, margin_best)

  return jax.lax.while_loop(lambda state: work_queue.busy(state.queue), body, init)


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
  """Square attack on the points where `active`; returns `(x_adv, still_robust)`.

  A work queue of `slots` samples in flight (see the module docstring); each sample's
  random draws are keyed by its index and its own iteration, so the result depends on
  `slots` only through float rounding.

  Args:
    apply_fn, params: the model, `apply_fn(params, x) -> logits [B, K]`.
    x: [B, H, W, C] float32 clean inputs; y [B] int32 labels (targets when `targeted`).
    key: the batch's PRNG key.
    active: bool [B], the points to attack.
    eps, n_queries, p_init, rescale_schedule, targeted, clip_min, clip_max, slots: as in
      `make_square`.

  Returns:
    `(x_adv, still_robust)`: x_adv [B, H, W, C], the fooling point where found, else x;
    still_robust bool [B], active points the search did not fool.
  """
  search = _Search(eps, p_init, n_queries, rescale_schedule, targeted, clip_min, clip_max)
  batch, _, width, channels = x.shape
  in_flight = min(default_slots(batch) if slots is None else slots, batch)
  key_init, key_loop = jax.random.split(key)
  stripes = jnp.sign(jax.random.uniform(key_init, (batch, 1, width, channels), minval=-1.0))
  x_start = jnp.clip(x + eps * stripes, clip_min, clip_max)
  # The two batched queries every sample makes first: the clean point and the stripes.
  active = active & (_margin_to_minimise(apply_fn(params, x), y, targeted) > 0)
  margin_start = _margin_to_minimise(apply_fn(params, x_start), y, targeted)
  searching = active & (margin_start > 0)
  order = jnp.argsort(~searching, stable=True)  # searching samples first, in index order
  queued = jnp.sum(searching) if n_queries > 0 else 0
  init = _State(work_queue.start(in_flight, order, queued), x_start, margin_start)
  final = _search_loop(apply_fn, params, x, y, sample_keys(key_loop, batch), init, search)
  fooled = active & (final.margin_best <= 0)
  return jnp.where(fooled[:, None, None, None], final.x_best, x), active & ~fooled


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
    check_batch(x, y)
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

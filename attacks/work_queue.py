"""Work queues: iterative attacks pay for the samples that need work, not for the whole batch.

Two forms. `WorkQueue` (slots) is for attacks whose samples finish at different times
(DeepFool, Square). `run_on_active` (chunks) is for attacks whose samples all take the same
number of iterations but of which only some need attacking (APGD, APGD-T, FAB-T: the
samples still robust after the clean pass or an earlier AutoAttack stage).

## Slots

An attack that stops each sample on its own condition (fooled, or out of steps) and runs a
fixed-shape `lax.while_loop` over the whole batch pays batch × the slowest sample's
iterations. A work queue keeps S slots in flight instead: each loop iteration works on the
samples the slots hold, and a slot whose sample finished takes the next one from the queue,
so the cost follows the sum of the samples' own iteration counts. DeepFool and Square use it.

The loop body of an attack:

    live, index = work_queue.held(queue)      # [S] bool, [S] int32 safe to gather with
    ...one iteration on x[index], using queue.steps as each sample's iteration count...
    queue = work_queue.refill(queue, live & finished)
    ...with `jax.lax.while_loop(lambda s: work_queue.busy(s.queue), body, state)`.

A slot holds a sample index in [0, N), or `EMPTY` (-1) when the queue has run dry. Use
`held`'s clamped index to gather, never a raw slot value, and scatter through
`jnp.where(live, index, N)` with `mode='drop'`: JAX wraps a negative index around.

## Chunks
The active samples are gathered to the front and the attack runs on ⌈n_active / C⌉ chunks
of C samples inside one `lax.while_loop`, so it costs n_active rounded up to a chunk, as
torchattacks' slicing out of the still-robust samples does; with none active it costs
nothing. Each sample draws from its own key (`attacks.base.sample_keys`), so its result
depends on C only through float rounding. The stage's samples must not interact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from attacks.base import sample_keys

EMPTY = -1
"""The sample index of a slot that holds no sample."""


class WorkQueue(NamedTuple):
  """The queue's state: what it serves, how far it has got, what each slot holds.

  Attributes:
    order: int32 [N], the sample indices in the order they are served.
    length: int32 scalar, how many entries of `order` are served (the rest never are).
    taken: int32 scalar, entries handed to slots so far.
    sample: int32 [S], the sample each slot holds, `EMPTY` where none.
    steps: int32 [S], iterations the slot's sample has completed.
  """

  order: jax.Array
  length: jax.Array
  taken: jax.Array
  sample: jax.Array
  steps: jax.Array


def start(slots: int, order: ArrayLike, length: ArrayLike | None = None) -> WorkQueue:
  """A queue with its first `min(slots, length)` samples loaded.

  Args:
    slots: S ≥ 1, samples in flight.
    order: int [N], the samples in the order they are served.
    length: int scalar ≤ N (may be traced), how many of `order` to serve; None serves all N.

  Returns:
    The `WorkQueue`, every slot at step 0; slots beyond `length` are `EMPTY`.
  """
  order = jnp.asarray(order, jnp.int32)
  length = order.shape[0] if length is None else length
  queue = WorkQueue(
    order=order,
    length=jnp.asarray(length, jnp.int32),
    taken=jnp.int32(0),
    sample=jnp.full((slots,), EMPTY, jnp.int32),
    steps=jnp.zeros((slots,), jnp.int32),
  )
  return refill(queue, jnp.ones((slots,), bool))


def refill(queue: WorkQueue, free: jax.Array) -> WorkQueue:
  """Ends an iteration: `free` slots take the next samples, the others count one more step.

  Args:
    queue: the state.
    free: bool [S], slots whose sample finished; they load the next entries of `order`
      in slot order, or become `EMPTY` once the queue is dry.

  Returns:
    The state: freed slots at step 0, every other slot's `steps` plus one.
  """
  rank = jnp.cumsum(free) - 1
  position = queue.taken + rank
  fresh = free & (position < queue.length)
  last = queue.order.shape[0] - 1
  loaded = jnp.where(fresh, queue.order[jnp.minimum(position, last)], EMPTY)
  return WorkQueue(
    order=queue.order,
    length=queue.length,
    taken=queue.taken + jnp.sum(fresh),
    sample=jnp.where(free, loaded, queue.sample),
    steps=jnp.where(free, 0, queue.steps + 1),
  )


def held(queue: WorkQueue) -> tuple[jax.Array, jax.Array]:
  """`(live, index)`: bool [S] whether a slot holds a sample, int32 [S] its index (0 if EMPTY)."""
  return queue.sample != EMPTY, jnp.maximum(queue.sample, 0)


def busy(queue: WorkQueue) -> jax.Array:
  """bool scalar: some slot still holds a sample (the `while_loop` condition)."""
  return jnp.any(queue.sample != EMPTY)


Stage = Callable[..., tuple[jax.Array, jax.Array]]
"""`stage(apply_fn, params, x [C, ...], y [C], keys [C], active [C]) -> (x_adv, still_robust)`:
keys are per-sample keys; x_adv [C, ...] is x where a sample was not fooled, still_robust
bool [C] the active samples it did not fool."""


CPU_CHUNK = 8


def default_chunk(batch: int) -> int:
  """Samples per chunk when `chunk` is None: `CPU_CHUNK` on a CPU, ⌈B/8⌉ elsewhere."""
  return CPU_CHUNK if jax.default_backend() == 'cpu' else -(-batch // 8)


def check_chunk(chunk: int | None) -> None:
  """Raises the one-line error of an attack factory given a chunk below 1."""
  if chunk is not None and chunk < 1:
    raise ValueError(f'chunk must be None or >= 1, got {chunk}')


def run_on_active(
  stage: Stage, chunk: int | None, apply_fn, params, x: jax.Array, y: jax.Array, key, active
) -> tuple[jax.Array, jax.Array]:
  """Runs `stage` on the active samples only, `chunk` at a time (the module docstring).

  Args:
    stage: see `Stage`.
    chunk: C ≥ 1, samples per stage call (at most B are used); None takes `default_chunk(B)`.
    apply_fn, params: the model, passed through to `stage`.
    x: [B, H, W, C] float32 clean inputs; y [B] int32 labels (or targets).
    key: the batch's key; sample i draws from `fold_in(key, i)`.
    active: bool [B], the samples to attack.

  Returns:
    `(x_adv, still_robust)`: x_adv [B, H, W, C], the stage's point for the samples it fooled,
    x elsewhere; still_robust bool [B], the active samples it did not fool.
  """
  batch = x.shape[0]
  if batch == 0:
    return x, active
  chunk = min(default_chunk(batch) if chunk is None else chunk, batch)
  capacity = -(-batch // chunk) * chunk
  order = jnp.argsort(~active, stable=True)  # active samples first, in index order
  order = jnp.pad(order, (0, capacity - batch), constant_values=batch)  # batch: no sample
  keys = sample_keys(key, batch)
  n_chunks = (jnp.sum(active) + chunk - 1) // chunk

  def body(c, carry):
    x_out, still = carry
    index = jax.lax.dynamic_slice_in_dim(order, c * chunk, chunk)
    real = index < batch
    at = jnp.minimum(index, batch - 1)
    adv, left = stage(apply_fn, params, x[at], y[at], keys[at], active[at] & real)
    write = jnp.where(real, index, batch)  # out of range: dropped
    return x_out.at[write].set(adv, mode='drop'), still.at[write].set(left, mode='drop')

  return jax.lax.fori_loop(0, n_chunks, body, (x, jnp.zeros_like(active)))

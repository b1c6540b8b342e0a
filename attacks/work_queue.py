"""A work queue of samples for iterative attacks whose samples finish at different times.

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
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

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

"""IDM's queue of ConvNets trained on REAL data while the synthetic set is distilled.

The official IDM loop (uitrbn/IDM, `IDM_cifar10.py` with `--net_train_real
--net_decay`) keeps a list of at most `net_num` ConvNets: three at the start, one
more appended every `net_generate_interval` iterations (the oldest dropped once
the list is full). Every iteration it matches the synthetic set with
`train_net_num` nets drawn from the list, then trains `fetch_net_num` distinct
random nets of the list for `model_train_steps` SGD steps (lr 0.01, momentum
0.9, weight decay 5e-4) on batches of `trained_bs` real images drawn from all
classes, no augmentation. Each net keeps an accuracy meter (top-1 % on the
batches it trained on, reset every `eval_interval` iterations) that weighs its
cross-entropy regulariser.

Here the list is a ring buffer of fixed capacity: every leaf of the parameters
and of the optimizer state gets a leading [capacity] axis, `size` slots are live
starting at `head` (the oldest), and a uniform draw over the live slots stands
for the reference's shuffles of the list (order never matters otherwise).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from beard_jax.data.specs import DatasetSpec
from beard_jax.distill.real_data import ClassIndexedData, sample_pooled, to_normalized
from beard_jax.models.convnet import ConvNet, init_params

INITIAL_NETS = 3


class NetQueue(NamedTuple):
  """A ring buffer of ConvNets with their SGD states and accuracy meters.

  Attributes:
    params: Flax variables, every leaf [Q, ...].
    opt_state: their optimizer states, every leaf [Q, ...].
    correct: int32 [Q], top-1 hits on the training batches since the last reset.
    seen: int32 [Q], images those hits were counted over.
    size: int32 [], live nets.
    head: int32 [], slot of the oldest live net.
  """

  params: Any
  opt_state: Any
  correct: jax.Array
  seen: jax.Array
  size: jax.Array
  head: jax.Array


def net_optimizer(learning_rate: float, momentum: float, weight_decay: float):
  """PyTorch's `SGD(lr, momentum, weight_decay)`: coupled decay, heavy-ball momentum."""
  return optax.chain(
    optax.add_decayed_weights(weight_decay), optax.sgd(learning_rate, momentum=momentum or None)
  )


def _fresh(key: jax.Array, model: ConvNet, spec: DatasetSpec, optimizer) -> tuple[Any, Any]:
  params = init_params(model, spec, key)
  return params, optimizer.init(params)


def init_queue(
  key: jax.Array, capacity: int, model: ConvNet, spec: DatasetSpec, optimizer
) -> NetQueue:
  """A queue of `capacity` slots whose first `INITIAL_NETS` are live fresh nets.

  Every slot is filled with a fresh net; those beyond `size` are never read and a
  `push` replaces them with a new one.
  """
  if capacity < INITIAL_NETS:
    raise ValueError(f'the net queue holds at least {INITIAL_NETS} nets, asked for {capacity}')
  keys = jax.random.split(key, capacity)
  params, opt_state = jax.vmap(lambda k: _fresh(k, model, spec, optimizer))(keys)
  zeros = jnp.zeros((capacity,), jnp.int32)
  return NetQueue(
    params, opt_state, zeros, zeros, jnp.asarray(INITIAL_NETS, jnp.int32), jnp.zeros((), jnp.int32)
  )


def push(queue: NetQueue, key: jax.Array, model: ConvNet, spec: DatasetSpec, optimizer) -> NetQueue:
  """Appends a fresh net (new meter); when the queue is full it replaces the oldest."""
  capacity = queue.correct.shape[0]
  full = queue.size == capacity
  slot = jnp.where(full, queue.head, (queue.head + queue.size) % capacity)
  params, opt_state = _fresh(key, model, spec, optimizer)
  return NetQueue(
    jax.tree.map(lambda stack, new: stack.at[slot].set(new), queue.params, params),
    jax.tree.map(lambda stack, new: stack.at[slot].set(new), queue.opt_state, opt_state),
    queue.correct.at[slot].set(0),
    queue.seen.at[slot].set(0),
    jnp.where(full, queue.size, queue.size + 1),
    jnp.where(full, (queue.head + 1) % capacity, queue.head),
  )


def draw_slots(queue: NetQueue, key: jax.Array, count: int) -> jax.Array:
  """int32 [count]: distinct live slots, uniformly at random (count ≤ size)."""
  capacity = queue.correct.shape[0]
  age = (jnp.arange(capacity) - queue.head) % capacity
  scores = jnp.where(age < queue.size, jax.random.uniform(key, (capacity,)), -1.0)
  return lax.top_k(scores, count)[1].astype(jnp.int32)


def accuracy_percent(queue: NetQueue, slot: jax.Array) -> jax.Array:
  """torchnet's `ClassErrorMeter(accuracy=True).value()[0]`: 100·correct/seen, 0 when unseen."""
  seen = queue.seen[slot]
  return jnp.where(seen > 0, 100.0 * queue.correct[slot] / jnp.maximum(seen, 1), 0.0)


def reset_meters(queue: NetQueue) -> NetQueue:
  """All accuracy meters back to empty."""
  return queue._replace(correct=jnp.zeros_like(queue.correct), seen=jnp.zeros_like(queue.seen))


def get_net(queue: NetQueue, slot: jax.Array) -> Any:
  """The Flax variables of the net in `slot`."""
  return jax.tree.map(lambda leaf: leaf[slot], queue.params)


def train_on_real(
  params: Any,
  opt_state: Any,
  key: jax.Array,
  data: ClassIndexedData,
  spec: DatasetSpec,
  model: ConvNet,
  optimizer,
  steps: int,
  batch_size: int,
) -> tuple[Any, Any, jax.Array, jax.Array]:
  """`steps` SGD steps on random real batches; returns params, opt_state, hits, images seen.

  Step i draws `batch_size` distinct images of the whole set with `fold_in(key, i)`.
  """

  def loss_fn(p, x, y):
    logits = model.apply(p, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits

  def body(i, carry):
    params, opt_state, correct = carry
    images, labels = sample_pooled(jax.random.fold_in(key, i), data, batch_size)
    grads, logits = jax.grad(loss_fn, has_aux=True)(params, to_normalized(spec, images), labels)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    hits = jnp.sum(jnp.argmax(logits, -1) == labels).astype(jnp.int32)
    return optax.apply_updates(params, updates), opt_state, correct + hits

  params, opt_state, correct = lax.fori_loop(
    0, steps, body, (params, opt_state, jnp.zeros((), jnp.int32))
  )
  return params, opt_state, correct, jnp.asarray(steps * batch_size, jnp.int32)


def train_slots(
  queue: NetQueue, slots: jax.Array, keys: jax.Array, train_fn, parallel: bool
) -> NetQueue:
  """Trains the nets in `slots` ([S] distinct) with `train_fn(params, opt_state, key)`.

  `parallel` vmaps the S nets (grouped convolutions: fast on GPU); otherwise they
  run one after the other (`lax.map`: faster on XLA:CPU).
  """
  params = jax.tree.map(lambda leaf: leaf[slots], queue.params)
  opt_state = jax.tree.map(lambda leaf: leaf[slots], queue.opt_state)
  if parallel:
    params, opt_state, hits, seen = jax.vmap(train_fn)(params, opt_state, keys)
  else:
    params, opt_state, hits, seen = lax.map(lambda args: train_fn(*args), (params, opt_state, keys))
  return queue._replace(
    params=jax.tree.map(lambda stack, new: stack.at[slots].set(new), queue.params, params),
    opt_state=jax.tree.map(lambda stack, new: stack.at[slots].set(new), queue.opt_state, opt_state),
    correct=queue.correct.at[slots].add(hits),
    seen=queue.seen.at[slots].add(seen),
  )

"""Clean accuracy of N stacked seeds in one pass over a test set."""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from beard_jax.models.convnet import ApplyFn, Params


def make_evaluate_fn(apply_fn: ApplyFn, batch_size: int = 256) -> Callable[..., jax.Array]:
  """`evaluate(stacked_params, images, labels) -> correct counts [N]`, jitted.

  One pass over the set in fixed-size batches (the last one padded and masked),
  every batch scored by all N seeds at once (`vmap` over the seed axis).
  Compiles once per (N, set shape).

  Args:
    apply_fn: `apply_fn(params, x) -> logits` for ONE seed's params.
    batch_size: images per batch.
  """
  if batch_size < 1:
    raise ValueError(f'batch_size must be positive, got {batch_size}')

  @jax.jit
  def evaluate(stacked_params: Params, images: jax.Array, labels: jax.Array) -> jax.Array:
    num_examples = images.shape[0]
    num_batches = math.ceil(num_examples / batch_size)
    pad = num_batches * batch_size - num_examples
    images = jnp.pad(images, [(0, pad)] + [(0, 0)] * (images.ndim - 1))
    labels = jnp.pad(labels.astype(jnp.int32), (0, pad))
    valid = jnp.arange(num_batches * batch_size) < num_examples
    batches = (
      images.reshape(num_batches, batch_size, *images.shape[1:]),
      labels.reshape(num_batches, batch_size),
      valid.reshape(num_batches, batch_size),
    )
    num_seeds = jax.tree.leaves(stacked_params)[0].shape[0]

    def score(correct, batch):
      x, y, mask = batch
      logits = jax.vmap(apply_fn, in_axes=(0, None))(stacked_params, x)  # [N, B, K]
      hits = (jnp.argmax(logits, axis=-1) == y[None, :]) & mask[None, :]
      return correct + jnp.sum(hits, axis=1, dtype=jnp.int32), None

    correct, _ = lax.scan(score, jnp.zeros((num_seeds,), jnp.int32), batches)
    return correct

  return evaluate


def evaluate_seeds(
  apply_fn: ApplyFn,
  stacked_params: Params,
  images: jax.typing.ArrayLike,
  labels: jax.typing.ArrayLike,
  batch_size: int = 256,
) -> np.ndarray:
  """Number of test images each seed classifies correctly.

  Args:
    apply_fn: `apply_fn(params, x) -> logits` for one seed (e.g. `make_apply_fn`).
    stacked_params: Flax variables with a leading seed axis [N, ...] on every leaf.
    images: [M, H, W, C] float32 in `apply_fn`'s input space.
    labels: int [M] true classes.
    batch_size: images per forward pass, all seeds together: each batch holds
      max(1, batch_size // N) images, so memory does not grow with N (a [N, B, 32, 32, 128]
      activation of 8 seeds at B = 256 is 1 GiB).

  Returns:
    [N] int64 correct counts (divide by M on the host for accuracies).
  """
  num_seeds = jax.tree.leaves(stacked_params)[0].shape[0]
  evaluate = make_evaluate_fn(apply_fn, max(1, batch_size // num_seeds))
  # Scored on one device: scoring is cheap, and XLA:CPU's partitioning of this scan over
  # seed-sharded parameters takes far more memory (bench/RESULTS.md, Scheduling defaults).
  stacked_params = jax.device_get(stacked_params)
  return np.asarray(evaluate(stacked_params, jnp.asarray(images, jnp.float32), jnp.asarray(labels)))

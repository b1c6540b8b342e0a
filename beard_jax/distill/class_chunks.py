"""Matching all classes in one jitted step, `class_chunk` classes at a time.

DM and IDM compute, per class c, a loss on (real batch of c, synthetic images of
c) that depends on c's synthetic images only, so all gradients can be taken at
once. `map_class_chunks` runs a chunk function over the K classes in chunks of
`class_chunk` (`lax.map` over chunks, the remainder as a last, smaller chunk);
`augmented_batches` draws and augments one chunk's batches and flattens them,
so that the ConvNet sees one plain batch per chunk (C·n real, C·m synthetic
images) rather than a vmapped one.

What pays, measured on the BEARD ConvNet (CIFAR-10, 10 classes × 32 real
images, 2-core CPU): one class at a time 0.50 s per forward pass of all
classes, one flat 320-image batch 0.74 s, a vmapped [10, 32] batch 1.31 s;
XLA:CPU runs the smaller batches faster (their activations stay in cache). So
`default_class_chunk` is 1 on CPU; on accelerators it chunks classes up to
about 4,096 CIFAR-sized real images per chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from beard_jax.data.specs import DatasetSpec
from beard_jax.distill.embedding import siamese_augment
from beard_jax.distill.real_data import ClassIndexedData, sample_class, to_normalized

# About this many 32×32-equivalent real images per chunk on accelerators.
_CHUNK_PIXEL_BUDGET = 4096 * 32 * 32


def default_class_chunk(num_classes: int, real_batch: int, image_size: int) -> int:
  """1 on CPU; elsewhere as many classes as fit ≈ 4,096 CIFAR-sized real images."""
  if jax.default_backend() == 'cpu':
    return 1
  per_class = max(real_batch, 1) * image_size * image_size
  return max(1, min(num_classes, _CHUNK_PIXEL_BUDGET // per_class))


def map_class_chunks(fn: Callable[[Any], Any], xs: Any, chunk: int) -> Any:
  """`fn` over the leading (class) axis of `xs` in chunks of `chunk`, outputs concatenated.

  Args:
    fn: maps a pytree whose leaves have leading axis C to one whose leaves have
      leading axis C (C = chunk, or the remainder for the last chunk).
    xs: pytree, every leaf [K, ...].
    chunk: classes per call, 1 ≤ chunk.

  Returns:
    The pytree of `fn`'s outputs, leaves [K, ...], in class order.
  """
  num_classes = jax.tree.leaves(xs)[0].shape[0]
  chunk = max(1, min(chunk, num_classes))
  full = num_classes // chunk * chunk
  parts = []
  if full:
    grouped = jax.tree.map(lambda a: a[:full].reshape(full // chunk, chunk, *a.shape[1:]), xs)
    out = lax.map(fn, grouped)
    parts.append(jax.tree.map(lambda a: a.reshape(full, *a.shape[2:]), out))
  if full < num_classes:
    parts.append(fn(jax.tree.map(lambda a: a[full:], xs)))
  return parts[0] if len(parts) == 1 else jax.tree.map(lambda *a: jnp.concatenate(a), *parts)


def per_class(fn: Callable[..., Any], *args: Any) -> Any:
  """`vmap(fn)(*args)` over the class axis, or a plain call when there is one class.

  The plain call keeps `lax.switch` (DSA's op choice) a real branch: under `vmap`
  with a batched key it computes every op and selects.
  """
  if jax.tree.leaves(args)[0].shape[0] == 1:
    out = fn(*jax.tree.map(lambda a: a[0], args))
    return jax.tree.map(lambda a: a[None], out)
  return jax.vmap(fn)(*args)


def augmented_batches(
  keys: jax.Array,
  labels: jax.Array,
  syn: jax.Array,
  data: ClassIndexedData,
  spec: DatasetSpec,
  real_batch: int,
  strategy: str,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """One chunk's real draws and Siamese-augmented batches, flattened for one forward each.

  Args:
    keys: [C] keys, one per class of the chunk (real draw and the shared DSA draw).
    labels: int32 [C], the chunk's classes.
    syn: [C, m, H, W, Ch] normalised synthetic images of those classes.
    data: the real set.
    spec: the dataset (normalisation).
    real_batch: n, real images per class (static).
    strategy: DSA strategy; real and synthetic images of a class share one draw.

  Returns:
    real [C·n, H, W, Ch] and syn [C·m, H, W, Ch] augmented, normalised images
    (class-major), and valid bool [C, n] (False on padding of small classes).
  """

  def one_class(key, label, syn_c):
    key_real, key_augment = jax.random.split(key)
    real, valid = sample_class(key_real, data, label, real_batch)
    both = jnp.concatenate([to_normalized(spec, real), syn_c])
    both = siamese_augment(key_augment, both, strategy)
    return both[:real_batch], both[real_batch:], valid

  real, syn, valid = per_class(one_class, keys, labels, syn)
  return real.reshape(-1, *real.shape[2:]), syn.reshape(-1, *syn.shape[2:]), valid


def class_means(embedded: jax.Array, num_classes: int, valid: jax.Array | None = None):
  """[C·n, F] class-major embeddings → [C, F] per-class means (over valid rows only)."""
  grouped = embedded.reshape(num_classes, -1, embedded.shape[-1])
  if valid is None:
    return jnp.mean(grouped, axis=1)
  weights = valid.astype(grouped.dtype)[..., None]
  return jnp.sum(grouped * weights, axis=1) / jnp.sum(weights, axis=1)

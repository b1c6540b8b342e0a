"""The real training set, indexed by class on the device, and its random batches.

Distillation draws, every iteration, a random batch of real images per class
(DC/DM's `get_images(c, n)`: n distinct images of class c, or all of them when
the class has fewer). `ClassIndexedData` keeps the uint8 images as one
[K, M, H, W, C] block (M = the largest class, shorter classes zero-padded), so
that a draw is a `top_k` of uniform scores over one row: a uniformly random
subset without replacement, jit- and vmap-friendly. Images are normalised only
after the gather, so the block costs 1 byte per pixel.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from beard_jax.data.specs import DatasetSpec
from beard_jax.models.convnet import normalize


class ClassIndexedData(NamedTuple):
  """A labelled real set, grouped by class.

  Attributes:
    images: uint8 [K, M, H, W, C]; class k's images are rows [k, :counts[k]] in
      their original order, the rest zeros.
    counts: int32 [K], images per class (each ≥ 1).
  """

  images: jax.Array
  counts: jax.Array


def index_by_class(images: np.ndarray, labels: np.ndarray, num_classes: int) -> ClassIndexedData:
  """Groups a real set by class and puts it on the default device.

  Args:
    images: uint8 [N, H, W, C], 0..255.
    labels: int [N] in [0, num_classes).
    num_classes: K.

  Returns:
    `ClassIndexedData` with M = the largest class count.

  Raises:
    ValueError: images that are not uint8 NHWC, labels out of range or of the
      wrong length, or a class without images.
  """
  images, labels = np.asarray(images), np.asarray(labels)
  if images.dtype != np.uint8 or images.ndim != 4:
    raise ValueError(f'expected uint8 images [N, H, W, C], found {images.dtype} {images.shape}')
  if labels.shape != images.shape[:1] or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(
      f'expected int labels [{images.shape[0]}], found {labels.dtype} {labels.shape}'
    )
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(
      f'labels must lie in [0, {num_classes}), found [{labels.min()}, {labels.max()}]'
    )
  counts = np.bincount(labels, minlength=num_classes)
  if (counts == 0).any():
    raise ValueError(f'classes {np.flatnonzero(counts == 0).tolist()[:10]} have no real image')
  block = np.zeros((num_classes, counts.max(), *images.shape[1:]), np.uint8)
  for c in range(num_classes):
    members = images[labels == c]
    block[c, : len(members)] = members
  return ClassIndexedData(jnp.asarray(block), jnp.asarray(counts, jnp.int32))


def check_ipc(data: ClassIndexedData, ipc: int) -> None:
  """Raises ValueError when a class has fewer than `ipc` real images to pick from."""
  counts = np.asarray(jax.device_get(data.counts))
  if (counts < ipc).any():
    raise ValueError(
      f'IPC {ipc} needs ≥ {ipc} real images per class; class {int(counts.argmin())} has '
      f'{counts.min()}'
    )


def real_data_sha256(images: np.ndarray, labels: np.ndarray) -> str:
  """sha256 of the uint8 image bytes (C order) followed by the labels as little-endian int64."""
  digest = hashlib.sha256(np.ascontiguousarray(images, np.uint8).tobytes())
  digest.update(np.ascontiguousarray(labels, np.dtype('<i8')).tobytes())
  return digest.hexdigest()


def to_normalized(spec: DatasetSpec, images: jax.Array) -> jax.Array:
  """uint8 [..., H, W, C] → mean/std-normalised float32 (pixels / 255, then `normalize`)."""
  return normalize(spec, images.astype(jnp.float32) / 255.0)


def sample_class_indices(
  key: jax.Array, data: ClassIndexedData, label: jax.typing.ArrayLike, n: int
) -> tuple[jax.Array, jax.Array]:
  """Positions of n distinct random images of one class in `data.images[label]`.

  Args:
    key: a `jax.random` key.
    data: the class-indexed real set.
    label: int32 scalar class index (may be traced).
    n: how many (static), at most M.

  Returns:
    index int32 [n] and valid bool [n]: the first min(n, counts[label]) entries
    are distinct positions of the class in random order; the others are padding.
  """
  max_count = data.images.shape[1]
  count = data.counts[label]
  scores = jnp.where(jnp.arange(max_count) < count, jax.random.uniform(key, (max_count,)), -1.0)
  index = lax.top_k(scores, n)[1].astype(jnp.int32)
  return index, jnp.arange(n) < count


def sample_class(
  key: jax.Array, data: ClassIndexedData, label: jax.typing.ArrayLike, n: int
) -> tuple[jax.Array, jax.Array]:
  """n distinct random images of one class (DC/DM's `get_images(c, n)`).

  Returns:
    images uint8 [n, H, W, C] and valid bool [n] (see `sample_class_indices`;
    a class with fewer than n images gives all of them, then padding).
  """
  index, valid = sample_class_indices(key, data, label, n)
  return data.images[label, index], valid


def sample_pooled(key: jax.Array, data: ClassIndexedData, n: int) -> tuple[jax.Array, jax.Array]:
  """n distinct random images drawn from the whole set (all classes together).

  Args:
    key: a `jax.random` key.
    data: the class-indexed real set; n must not exceed its total count.
    n: batch size (static).

  Returns:
    images uint8 [n, H, W, C] and their labels int32 [n].
  """
  num_classes, max_count = data.images.shape[:2]
  valid = jnp.arange(max_count)[None, :] < data.counts[:, None]
  scores = jnp.where(valid, jax.random.uniform(key, (num_classes, max_count)), -1.0)
  _, flat = lax.top_k(scores.reshape(-1), n)
  labels = (flat // max_count).astype(jnp.int32)
  return data.images[labels, flat % max_count], labels

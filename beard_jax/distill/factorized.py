"""IDM's "4-in-1" images: four half-size images stored in the quadrants of one.

IDM (`--aug`) optimises images whose quadrants each hold one real image shrunk
×0.5; the loss sees each quadrant upsampled ×2 (`number_sign_augment`). Both
resamplings are PyTorch's bilinear `F.upsample(..., mode='bilinear')` with
`align_corners=False` and no antialiasing, which for factors 0.5 and 2 are:

  * ×0.5: the mean of each 2×2 block;
  * ×2: output 2k = 0.75·x[k] + 0.25·x[k-1], output 2k+1 = 0.75·x[k] + 0.25·x[k+1],
    indices clamped at the border (`dataset_pool.upsample2x_bilinear` in numpy).

Quadrant order is IDM's: top-left, bottom-left, top-right, bottom-right (its
`a, b, c, d`). `dataset_pool.factorize_4in1` decodes files in the order
top-left, top-right, bottom-left, bottom-right; the two differ only in the order
of the decoded images, and all four quadrants of an image share its label.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _quadrant_slices(height: int, width: int) -> list[tuple[slice, slice]]:
  h, w = height // 2, width // 2
  top, bottom, left, right = slice(0, h), slice(h, height), slice(0, w), slice(w, width)
  return [(top, left), (bottom, left), (top, right), (bottom, right)]


def _check_even(x: jax.Array) -> None:
  if x.ndim != 4 or x.shape[1] % 2 or x.shape[2] % 2:
    raise ValueError(f'4-in-1 images need [N, H, W, C] with even H and W, found {x.shape}')


def upsample2x(x: jax.typing.ArrayLike) -> jax.Array:
  """Bilinear ×2 upsampling (PyTorch `align_corners=False`): [N, H, W, C] → [N, 2H, 2W, C]."""
  x = jnp.asarray(x, jnp.float32)
  for axis in (1, 2):
    n = x.shape[axis]
    index = jnp.arange(n)
    previous = jnp.take(x, jnp.maximum(index - 1, 0), axis=axis)
    following = jnp.take(x, jnp.minimum(index + 1, n - 1), axis=axis)
    even = 0.75 * x + 0.25 * previous
    odd = 0.75 * x + 0.25 * following
    x = jnp.stack([even, odd], axis=axis + 1)
    x = x.reshape(x.shape[:axis] + (2 * n,) + x.shape[axis + 2 :])
  return x


def downscale2x(x: jax.typing.ArrayLike) -> jax.Array:
  """Bilinear ×0.5 (PyTorch `align_corners=False`): 2×2 means, [N, H, W, C] → [N, H/2, W/2, C]."""
  x = jnp.asarray(x, jnp.float32)
  _check_even(x)
  n, height, width, channels = x.shape
  return x.reshape(n, height // 2, 2, width // 2, 2, channels).mean(axis=(2, 4))


def decode_4in1(x: jax.typing.ArrayLike) -> jax.Array:
  """IDM's `number_sign_augment`: [N, H, W, C] → [4N, H, W, C].

  Row q·N + i is quadrant q of image i upsampled ×2, q in IDM's order (top-left,
  bottom-left, top-right, bottom-right); labels are the input labels tiled 4×.
  """
  x = jnp.asarray(x, jnp.float32)
  _check_even(x)
  quadrants = [x[:, rows, cols] for rows, cols in _quadrant_slices(x.shape[1], x.shape[2])]
  return upsample2x(jnp.concatenate(quadrants))


def encode_4in1(sources: jax.typing.ArrayLike) -> jax.Array:
  """IDM's real initialisation: four full-size images per slot, each shrunk into a quadrant.

  Args:
    sources: [4, N, H, W, C] float32; sources[q] goes to quadrant q (IDM's order).

  Returns:
    [N, H, W, C] float32.
  """
  sources = jnp.asarray(sources, jnp.float32)
  _, n, height, width, channels = sources.shape
  out = jnp.zeros((n, height, width, channels), jnp.float32)
  for q, (rows, cols) in enumerate(_quadrant_slices(height, width)):
    out = out.at[:, rows, cols].set(downscale2x(sources[q]))
  return out

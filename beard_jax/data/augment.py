"""Differentiable Siamese Augmentation (DSA), as the dataset-distillation code applies it.

DSA (Zhao & Bilen, 2021) draws ONE operation per batch from a strategy string
such as `color_crop_cutout_flip_scale_rotate`; every image of the batch then
draws its own parameters for that operation (PROTOCOL.md §4). The operations:

  * `color`: brightness `x + (u - 0.5)·brightness`, then saturation
    `(x - m)·(u·saturation) + m` around the per-pixel channel mean m, then
    contrast `(x - m)·(u + contrast) + m` around the per-image mean m
    (u ~ U(0, 1), a fresh draw for each of the three, per image).
  * `crop`: an integer translation by t ~ U{-s, …, s} per axis,
    s = int(size·ratio_crop_pad + 0.5), filled with zeros (the reference pads by
    one zero pixel and clamps the shifted index into the pad, which is the same).
  * `cutout`: one zeroed square of side int(size·ratio_cutout + 0.5) whose
    centre is drawn per image (it may hang over the border).
  * `flip`: a horizontal mirror with probability prob_flip.
  * `scale`: ×U(1/ratio_scale, ratio_scale) per axis about the centre.
  * `rotate`: by U(-ratio_rotate, ratio_rotate) degrees about the centre.

`scale` and `rotate` resample bilinearly on the affine grid the reference builds
with PyTorch's `affine_grid`/`grid_sample(align_corners=True)`, zero outside.

The input is a batch of mean/std-NORMALISED images, because that is what the
reference applies DSA to: the zero fill of crop, cutout, scale and rotate is
therefore the dataset's mean colour, and the colour operations act on
normalised values. Everything here is a pure function of the key: it jits and
vmaps (under `vmap` over keys, `lax.switch` evaluates every branch and selects).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

DEFAULT_STRATEGY = 'color_crop_cutout_flip_scale_rotate'


class DSAParams(NamedTuple):
  """Magnitudes of the DSA operations (the reference's `ParamDiffAug` defaults).

  Attributes:
    prob_flip: probability of the horizontal mirror.
    ratio_scale: scale factors are drawn from U(1/ratio_scale, ratio_scale).
    ratio_rotate: angles are drawn from U(-ratio_rotate, ratio_rotate), degrees.
    ratio_crop_pad: largest translation, as a fraction of the image side.
    ratio_cutout: side of the cutout square, as a fraction of the image side.
    brightness: brightness offsets are (U(0, 1) - 0.5)·brightness.
    saturation: saturation factors are U(0, 1)·saturation.
    contrast: contrast factors are U(0, 1) + contrast.
  """

  prob_flip: float = 0.5
  ratio_scale: float = 1.2
  ratio_rotate: float = 15.0
  ratio_crop_pad: float = 0.125
  ratio_cutout: float = 0.5
  brightness: float = 1.0
  saturation: float = 2.0
  contrast: float = 0.5


def _uniform(key: jax.Array, batch: int) -> jax.Array:
  """U(0, 1) per image, shaped [B, 1, 1, 1] to broadcast over an NHWC batch."""
  return jax.random.uniform(key, (batch, 1, 1, 1), jnp.float32)


def _color(key: jax.Array, x: jax.Array, params: DSAParams) -> jax.Array:
  """Brightness, saturation and contrast, in that order, each drawn per image."""
  key_b, key_s, key_c = jax.random.split(key, 3)
  batch = x.shape[0]
  x = x + (_uniform(key_b, batch) - 0.5) * params.brightness
  pixel_mean = jnp.mean(x, axis=-1, keepdims=True)
  x = (x - pixel_mean) * (_uniform(key_s, batch) * params.saturation) + pixel_mean
  image_mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  return (x - image_mean) * (_uniform(key_c, batch) + params.contrast) + image_mean


def translate(x: jax.Array, shift_h: jax.Array, shift_w: jax.Array) -> jax.Array:
  """Integer translation with zero fill: out[b, i, j] = x[b, i + shift_h[b], j + shift_w[b]].

  Args:
    x: [B, H, W, C] float32.
    shift_h: [B] int32, row offsets (positive moves the content up).
    shift_w: [B] int32, column offsets (positive moves the content left).

  Returns:
    [B, H, W, C] float32; pixels whose source lies outside the image are 0.
  """
  _, height, width, _ = x.shape
  rows = jnp.arange(height)[None, :] + shift_h[:, None]  # [B, H]
  cols = jnp.arange(width)[None, :] + shift_w[:, None]  # [B, W]
  valid = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[:, None, :]

  def gather(image, r, c):
    return image[jnp.clip(r, 0, height - 1)][:, jnp.clip(c, 0, width - 1)]

  moved = jax.vmap(gather)(x, rows, cols)
  return jnp.where(valid[..., None], moved, jnp.zeros_like(moved))


def _crop(key: jax.Array, x: jax.Array, params: DSAParams) -> jax.Array:
  """Random translation by up to ratio_crop_pad of the side, zero fill."""
  batch, height, width, _ = x.shape
  max_h = int(height * params.ratio_crop_pad + 0.5)
  max_w = int(width * params.ratio_crop_pad + 0.5)
  key_h, key_w = jax.random.split(key)
  shift_h = jax.random.randint(key_h, (batch,), -max_h, max_h + 1)
  shift_w = jax.random.randint(key_w, (batch,), -max_w, max_w + 1)
  return translate(x, shift_h, shift_w)


def _cutout_lines(offset: jax.Array, size: int, length: int) -> jax.Array:
  """[B, length] bool: the lines the reference zeroes for a cutout of `size` at `offset`.

  The reference zeroes lines clip(offset - size // 2 + k, 0, length - 1), k < size.
  """
  lines = jnp.clip(offset[:, None] - size // 2 + jnp.arange(size)[None, :], 0, length - 1)
  return jnp.any(lines[:, :, None] == jnp.arange(length)[None, None, :], axis=1)


def _cutout(key: jax.Array, x: jax.Array, params: DSAParams) -> jax.Array:
  """One zeroed square of side ratio_cutout·size per image, centre drawn per image."""
  batch, height, width, _ = x.shape
  size_h = int(height * params.ratio_cutout + 0.5)
  size_w = int(width * params.ratio_cutout + 0.5)
  key_h, key_w = jax.random.split(key)
  # The reference's offsets: randint(0, side + (1 - size % 2)), upper bound exclusive.
  offset_h = jax.random.randint(key_h, (batch,), 0, height + (1 - size_h % 2))
  offset_w = jax.random.randint(key_w, (batch,), 0, width + (1 - size_w % 2))
  rows = _cutout_lines(offset_h, size_h, height)
  cols = _cutout_lines(offset_w, size_w, width)
  hole = rows[:, :, None] & cols[:, None, :]
  return jnp.where(hole[..., None], jnp.zeros_like(x), x)


def _flip(key: jax.Array, x: jax.Array, params: DSAParams) -> jax.Array:
  """Horizontal mirror (W axis) of each image with probability prob_flip."""
  flip = _uniform(key, x.shape[0]) < params.prob_flip
  return jnp.where(flip, x[:, :, ::-1, :], x)


def affine_resample(x: jax.Array, theta: jax.Array) -> jax.Array:
  """Bilinear resampling on an affine grid, like `grid_sample(affine_grid(θ), align_corners=True)`.

  Coordinates are PyTorch's normalised ones: u (width) and v (height) run from
  -1 at the first pixel centre to +1 at the last. Output pixel (v, u) reads the
  input at (u', v') = θ · (u, v, 1); taps outside the image contribute 0.

  Args:
    x: [B, H, W, C] float32.
    theta: [B, 2, 3] float32, rows (u', v').

  Returns:
    [B, H, W, C] float32. θ = [[1, 0, 0], [0, 1, 0]] returns x exactly.
  """
  _, height, width, _ = x.shape
  half_w = (width - 1) / 2.0
  half_h = (height - 1) / 2.0
  # Pixel offsets from the centre; working in pixels keeps the identity exact.
  dj = jnp.arange(width, dtype=jnp.float32) - half_w  # [W]
  di = jnp.arange(height, dtype=jnp.float32) - half_h  # [H]
  ratio_hw = half_h / half_w if width > 1 else 1.0
  ratio_wh = half_w / half_h if height > 1 else 1.0
  t = theta[:, :, :, None, None]  # [B, 2, 3, 1, 1]
  src_j = (
    half_w
    + t[:, 0, 0] * dj[None, None, :]
    + t[:, 0, 1] * ratio_wh * di[None, :, None]
    + t[:, 0, 2] * half_w
  )  # [B, H, W]
  src_i = (
    half_h
    + t[:, 1, 0] * ratio_hw * dj[None, None, :]
    + t[:, 1, 1] * di[None, :, None]
    + t[:, 1, 2] * half_h
  )
  j0 = jnp.floor(src_j)
  i0 = jnp.floor(src_i)
  wj1 = src_j - j0
  wi1 = src_i - i0
  j0 = j0.astype(jnp.int32)
  i0 = i0.astype(jnp.int32)

  def tap(image, i, j):
    valid = (i >= 0) & (i < height) & (j >= 0) & (j < width)
    value = image[jnp.clip(i, 0, height - 1), jnp.clip(j, 0, width - 1)]  # [H, W, C]
    return jnp.where(valid[..., None], value, jnp.zeros_like(value))

  def sample(image, i0, j0, wi1, wj1):
    wi0, wj0 = 1.0 - wi1, 1.0 - wj1
    return (
      tap(image, i0, j0) * (wi0 * wj0)[..., None]
      + tap(image, i0, j0 + 1) * (wi0 * wj1)[..., None]
      + tap(image, i0 + 1, j0) * (wi1 * wj0)[..., None]
      + tap(image, i0 + 1, j0 + 1) * (wi1 * wj1)[..., None]
    )

  return jax.vmap(sample)(x, i0, j0, wi1, wj1)


def _scale(key: jax.Array, x: jax.Array, params: DSAParams) -> jax.Array:
  """Scale each axis by its own factor U(1/ratio_scale, ratio_scale) about the centre."""
  batch = x.shape[0]
  key_x, key_y = jax.random.split(key)
  low = 1.0 / params.ratio_scale
  span = params.ratio_scale - low
  scale_x = jax.random.uniform(key_x, (batch,)) * span + low
  scale_y = jax.random.uniform(key_y, (batch,)) * span + low
  zero = jnp.zeros_like(scale_x)
  theta = jnp.stack(
    [jnp.stack([scale_x, zero, zero], -1), jnp.stack([zero, scale_y, zero], -1)], axis=1
  )
  return affine_resample(x, theta)


def _rotate(key: jax.Array, x: jax.Array, params: DSAParams) -> jax.Array:
  """Rotate each image by U(-ratio_rotate, ratio_rotate) degrees about the centre."""
  batch = x.shape[0]
  angle = (jax.random.uniform(key, (batch,)) - 0.5) * 2.0 * params.ratio_rotate / 180.0 * math.pi
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  zero = jnp.zeros_like(angle)
  theta = jnp.stack([jnp.stack([cos, -sin, zero], -1), jnp.stack([sin, cos, zero], -1)], axis=1)
  return affine_resample(x, theta)


# The reference's magnitudes.
DSA_PARAMS = DSAParams()

DSAOp = Callable[[jax.Array, jax.Array, DSAParams], jax.Array]

DSA_OPS: dict[str, DSAOp] = {
  'color': _color,
  'crop': _crop,
  'cutout': _cutout,
  'flip': _flip,
  'scale': _scale,
  'rotate': _rotate,
}


def parse_strategy(strategy: str) -> tuple[str, ...]:
  """`'color_crop_flip'` → `('color', 'crop', 'flip')`, checking every name.

  Raises:
    ValueError: an empty strategy or an unknown operation.
  """
  names = tuple(name for name in strategy.split('_') if name)
  if not names:
    raise ValueError(f'empty DSA strategy {strategy!r}; choose ops from {sorted(DSA_OPS)}')
  for name in names:
    if name not in DSA_OPS:
      raise ValueError(f'unknown DSA op {name!r} in {strategy!r}; choose from {sorted(DSA_OPS)}')
  return names


def dsa_augment(
  key: jax.Array,
  x: jax.typing.ArrayLike,
  strategy: str = DEFAULT_STRATEGY,
  params: DSAParams = DSA_PARAMS,
  op_index: jax.typing.ArrayLike | None = None,
) -> jax.Array:
  """Applies one DSA operation, drawn at random, to a batch of normalised images.

  Args:
    key: a `jax.random` key; the op choice and every per-image parameter derive from it.
    x: [B, H, W, C] float32, mean/std-normalised images (as the reference augments them).
    strategy: op names joined by `_`, from `DSA_OPS` (static).
    params: magnitudes (static).
    op_index: None to draw the op uniformly from the strategy; an int32 scalar
      (may be traced) to force `parse_strategy(strategy)[op_index]`.

  Returns:
    [B, H, W, C] float32, the augmented batch.

  Raises:
    ValueError: `strategy` names an unknown op, a Python `op_index` is out of
      range, or x is not a rank-4 batch. (A traced `op_index` is clamped, as
      `lax.switch` does.)
  """
  x = jnp.asarray(x, jnp.float32)
  if x.ndim != 4:
    raise ValueError(f'expected a [B, H, W, C] batch, got shape {x.shape}')
  names = parse_strategy(strategy)
  key_choice, key_op = jax.random.split(key)
  if op_index is None:
    op_index = jax.random.randint(key_choice, (), 0, len(names))
  elif isinstance(op_index, int) and not 0 <= op_index < len(names):
    raise ValueError(f'op_index {op_index} out of range for {names}')
  branches = [lambda k, v, op=DSA_OPS[name]: op(k, v, params) for name in names]
  return lax.switch(jnp.asarray(op_index, jnp.int32), branches, key_op, x)

"""The ConvNet of the dataset-distillation literature, as BEARD's code builds it.

Three blocks of `Conv 3×3 (width, bias) → GroupNorm(width groups, eps 1e-5) →
ReLU → AvgPool 2×2/2`, then `Linear(width·h·w → K)` on features flattened in
C, H, W order (PROTOCOL.md §2). Everything outside this package sees only the
functional form `apply_fn(params, x) -> logits` built by `make_apply_fn`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from beard_jax.data.specs import DatasetSpec
from beard_jax.models.conv import conv3x3_same

Params = Any
ApplyFn = Callable[[Params, jax.Array], jax.Array]

INPUT_SPACES = ('pixels', 'normalized')


def _torch_default_kernel_init():
  """PyTorch's default Conv/Linear weight init: U(±1/√fan_in)."""
  return nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')


def _torch_default_bias_init(fan_in: int):
  """PyTorch's default Conv/Linear bias init: U(±1/√fan_in)."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


class Conv3x3(nn.Module):
  """`nn.Conv(features, (3, 3), padding=1)` with the loop-friendly gradient of `conv.py`.

  Parameters are named `kernel` [3, 3, C_in, C_out] and `bias` [C_out], as `nn.Conv`'s.
  """

  features: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    fan_in = 3 * 3 * x.shape[-1]
    kernel = self.param(
      'kernel', _torch_default_kernel_init(), (3, 3, x.shape[-1], self.features), jnp.float32
    )
    bias = self.param('bias', _torch_default_bias_init(fan_in), (self.features,), jnp.float32)
    return conv3x3_same(x, kernel) + bias


class InstanceNorm(nn.Module):
  """`nn.GroupNorm(num_groups=C, epsilon, use_fast_variance=False)`, computed per channel.

  The same values and parameters (`scale` [C] ones, `bias` [C] zeros) as Flax's
  GroupNorm with one channel per group, without its [B, H, W, G, 1] reshape:
  measured on the BEARD ConvNet (2-core CPU, batch 16), that reshape made a
  forward pass 1.5× and DeepFool's ten input gradients 1.6× slower.
  """

  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x [B, H, W, C] → [B, H, W, C], each (image, channel) normalised over H, W."""
    channels = x.shape[-1]
    scale = self.param('scale', nn.initializers.ones, (channels,), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (channels,), jnp.float32)
    mean = jnp.mean(x, axis=(1, 2), keepdims=True)
    centred = x - mean
    variance = jnp.mean(jnp.square(centred), axis=(1, 2), keepdims=True)
    return centred * jax.lax.rsqrt(variance + self.epsilon) * scale + bias


class ConvNet(nn.Module):
  """ConvNet-{width}-{depth} with instance norm and 2×2 average pooling.

  Attributes:
    num_classes: K, the size of the output.
    width: channels of every conv layer (128 in BEARD).
    depth: number of conv blocks (3 in BEARD).
  """

  num_classes: int
  width: int = 128
  depth: int = 3

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Logits of normalised images.

    Args:
      x: [B, H, W, C] float32, already mean/std-normalised; H = W divisible by 2**depth.

    Returns:
      [B, K] float32 logits.
    """
    for block in range(self.depth):
      x = Conv3x3(self.width, name=f'conv{block}')(x)
      # GroupNorm(width groups): per-channel, per-image normalisation ("instancenorm").
      x = InstanceNorm(epsilon=1e-5, name=f'norm{block}')(x)
      x = nn.relu(x)
      x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    # PyTorch flattens [B, C, H, W]; keep that order so imported weights line up.
    features = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
    return nn.Dense(
      self.num_classes,
      kernel_init=_torch_default_kernel_init(),
      bias_init=_torch_default_bias_init(features.shape[-1]),
      name='classifier',
    )(features)


def init_params(model: ConvNet, spec: DatasetSpec, key: jax.Array) -> Params:
  """Fresh parameters for `model` on images of `spec`'s shape (PyTorch's default init)."""
  dummy = jnp.zeros((1, *spec.image_shape), jnp.float32)
  return model.init(key, dummy)


def make_apply_fn(model: ConvNet, spec: DatasetSpec, input_space: str = 'pixels') -> ApplyFn:
  """The functional form of `model`: `apply_fn(params, x) -> logits`.

  Args:
    model: the Flax module.
    spec: the dataset whose mean/std normalise the input.
    input_space: `pixels` takes [0, 1] images and normalises inside the model
      (the `standard` protocol); `normalized` takes mean/std-normalised images
      as they are (the `beard` protocol, where attacks act on normalised tensors).

  Returns:
    `apply_fn(params, x)`: x [B, H, W, C] float32 → logits [B, K] float32.
  """
  if input_space not in INPUT_SPACES:
    raise ValueError(f'unknown input_space {input_space!r}; choose from {INPUT_SPACES}')
  if input_space == 'normalized':
    return model.apply
  mean = jnp.asarray(spec.mean, jnp.float32)
  std = jnp.asarray(spec.std, jnp.float32)

  def apply_fn(params: Params, x: jax.Array) -> jax.Array:
    return model.apply(params, (x - mean) / std)

  return apply_fn


def normalize(spec: DatasetSpec, x: jax.Array) -> jax.Array:
  """[0, 1] pixels → mean/std-normalised values, per channel (last axis)."""
  return (x - jnp.asarray(spec.mean, x.dtype)) / jnp.asarray(spec.std, x.dtype)


def denormalize(spec: DatasetSpec, x: jax.Array) -> jax.Array:
  """Mean/std-normalised values → [0, 1]-scale pixels (not clipped), per channel."""
  return x * jnp.asarray(spec.std, x.dtype) + jnp.asarray(spec.mean, x.dtype)

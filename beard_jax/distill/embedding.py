"""The ConvNet's embedding (features before the classifier) and Siamese DSA.

`features` is what DC/DM's `net.embed(x)` returns: the output of the last conv
block flattened in C, H, W order, i.e. the input of the `classifier` layer.
`models/convnet.py` has no method for it, so the classifier call is intercepted
(`flax.linen.intercept_methods`) and its input captured; `features` skips the
classifier's matmul, `features_and_logits` runs it.

`siamese_augment` is DSA as the distillation loops call it with a seed
(`DiffAugment(x, strategy, seed=s)`): ONE operation and ONE set of parameters for
the whole batch (the reference's "batch mode": every per-image draw is replaced
by the first image's), and the same for every batch augmented with the same
key, so real and synthetic images of a class see the same transformation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax

from beard_jax.data.augment import DSA_PARAMS, DSAParams, dsa_augment
from beard_jax.models.convnet import ConvNet, Params

_CLASSIFIER = 'classifier'


def _apply_capturing(
  model: ConvNet, params: Params, x: jax.Array, run_classifier: bool
) -> tuple[jax.Array, jax.Array | None]:
  captured = []

  def interceptor(next_fun, args, kwargs, context):
    if context.module.name == _CLASSIFIER and context.method_name == '__call__':
      captured.append(args[0])
      if not run_classifier:
        return jnp.zeros((args[0].shape[0], model.num_classes), args[0].dtype)
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(interceptor):
    logits = model.apply(params, x)
  if len(captured) != 1:
    raise RuntimeError(f'expected one call of {_CLASSIFIER!r} in the ConvNet, saw {len(captured)}')
  return captured[0], logits if run_classifier else None


def features(model: ConvNet, params: Params, x: jax.typing.ArrayLike) -> jax.Array:
  """The embedding DM matches: the classifier's input.

  Args:
    model: the ConvNet.
    params: its Flax variables.
    x: [B, H, W, C] float32, mean/std-normalised images.

  Returns:
    [B, width · (H / 2**depth) · (W / 2**depth)] float32, flattened in C, H, W order.
  """
  return _apply_capturing(model, params, jnp.asarray(x, jnp.float32), run_classifier=False)[0]


def features_and_logits(
  model: ConvNet, params: Params, x: jax.typing.ArrayLike
) -> tuple[jax.Array, jax.Array]:
  """`features(model, params, x)` and the logits [B, K] of the same forward pass."""
  return _apply_capturing(model, params, jnp.asarray(x, jnp.float32), run_classifier=True)


def embed_all(
  model: ConvNet, params: Params, images: jax.typing.ArrayLike, batch_size: int = 500
) -> jax.Array:
  """`features` of many images, `batch_size` at a time (bounded memory).

  Args:
    model, params: as `features`.
    images: [N, H, W, C] float32, normalised.
    batch_size: images per forward pass.

  Returns:
    [N, F] float32.
  """
  images = jnp.asarray(images, jnp.float32)
  count = images.shape[0]
  batch_size = min(batch_size, count)
  padded = -count % batch_size
  batches = jnp.pad(images, ((0, padded), (0, 0), (0, 0), (0, 0)))
  batches = batches.reshape(-1, batch_size, *images.shape[1:])
  embedded = lax.map(lambda batch: features(model, params, batch), batches)
  return embedded.reshape(-1, embedded.shape[-1])[:count]


def siamese_augment(
  key: jax.Array,
  x: jax.typing.ArrayLike,
  strategy: str,
  params: DSAParams = DSA_PARAMS,
) -> jax.Array:
  """DSA with one operation and one parameter draw shared by the whole batch.

  Args:
    key: a `jax.random` key; batches augmented with the same key get the same
      operation and parameters, whatever their size.
    x: [B, H, W, C] float32, normalised images.
    strategy: DSA op names joined by `_` (`beard_jax.data.augment`); '' or
      'none' returns x unchanged, as the reference does.
    params: DSA magnitudes.

  Returns:
    [B, H, W, C] float32.
  """
  x = jnp.asarray(x, jnp.float32)
  if strategy in ('', 'none', 'None'):
    return x
  return jax.vmap(lambda image: dsa_augment(key, image[None], strategy, params)[0])(x)

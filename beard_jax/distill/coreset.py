"""Coreset baselines: class-balanced random, herding and k-center selections of real images.

  * `random`: ipc distinct images per class, uniformly at random (`key`).
  * `herding` (Welling 2009; Rebuffi et al. 2017): per class, greedily add the
    image whose embedding brings the running mean of the selected embeddings
    closest (L2) to the class mean; deterministic given the embeddings.
  * `kcenter` (greedy k-center, Sener & Savarese 2018): per class, start from a
    random image (`key`), then repeatedly add the image farthest (L2) from its
    nearest selected one.

Embeddings are the ConvNet's features before the classifier (`embedding.features`),
unnormalised (iCaRL's herding L2-normalises them; DC's description does not).
Which ConvNet: by default one TRAINED on the real training set given
(`feature_net='trained'`, `feature_epochs` epochs of the project's SGD recipe
with DSA, lr decay at the midpoint), following the DC paper's description of its
Herding and K-Center baselines (features of a ConvNet trained on the whole
training set), whose numbers DC-bench reports. A randomly initialised net
(`feature_net='random'`) embeds mostly colour statistics, so herding and
k-center on it select by colour rather than by class content. DC-bench's
repository ships precomputed coreset files and no selection code, so the
training length could not be checked against code: `feature_epochs` (default
20) is ours and is recorded in the sidecar.

The selected images are returned mean/std-normalised, class-major, in selection
order within a class.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from beard_jax.data.specs import DatasetSpec
from beard_jax.distill.embedding import embed_all
from beard_jax.distill.real_data import (
  ClassIndexedData,
  check_ipc,
  sample_class_indices,
  to_normalized,
)
from beard_jax.models.convnet import ConvNet, Params, init_params
from beard_jax.train import train_seeds
from beard_jax.train.recipes import TrainRecipe

FEATURE_NETS = ('trained', 'random')


class CoresetConfig(NamedTuple):
  """How herding and k-center embed the real images (random selection ignores it).

  Attributes:
    feature_net: `trained` (on the real set given) or `random` (fresh init).
    feature_epochs: training epochs of the `trained` net.
    embed_batch: images per forward pass when embedding the real set.
    net_width: ConvNet width.
    net_depth: ConvNet depth.
  """

  feature_net: str = 'trained'
  feature_epochs: int = 20
  embed_batch: int = 500
  net_width: int = 128
  net_depth: int = 3


def select_random(key: jax.Array, data: ClassIndexedData, ipc: int) -> jax.Array:
  """int32 [K, ipc]: per class, ipc distinct random positions in `data.images[k]`."""
  check_ipc(data, ipc)
  num_classes = data.images.shape[0]
  keys = jax.random.split(key, num_classes)

  def one_class(k, label, data):
    return sample_class_indices(k, data, label, ipc)[0]

  return jax.jit(jax.vmap(one_class, in_axes=(0, 0, None)))(keys, jnp.arange(num_classes), data)


def _squared_norms(features: jax.Array) -> jax.Array:
  return jnp.sum(jnp.square(features), axis=-1)


def _herd_class(features: jax.Array, count: jax.Array, ipc: int) -> jax.Array:
  """[M, F] embeddings (rows ≥ count padding) → int32 [ipc] herding order."""
  max_count = features.shape[0]
  valid = jnp.arange(max_count) < count
  mean = jnp.sum(jnp.where(valid[:, None], features, 0.0), 0) / count
  norms = _squared_norms(features)

  def body(t, carry):
    chosen, taken, selected_sum = carry
    target = mean * (t + 1) - selected_sum  # The next image should sit here.
    distance = norms - 2.0 * features @ target
    pick = jnp.argmin(jnp.where(valid & ~taken, distance, jnp.inf)).astype(jnp.int32)
    return chosen.at[t].set(pick), taken.at[pick].set(True), selected_sum + features[pick]

  initial = (jnp.zeros((ipc,), jnp.int32), jnp.zeros((max_count,), bool), jnp.zeros_like(mean))
  return lax.fori_loop(0, ipc, body, initial)[0]


def _kcenter_class(key: jax.Array, features: jax.Array, count: jax.Array, ipc: int) -> jax.Array:
  """[M, F] embeddings → int32 [ipc] greedy k-center order, first center random."""
  max_count = features.shape[0]
  valid = jnp.arange(max_count) < count
  norms = _squared_norms(features)
  first = jax.random.randint(key, (), 0, count).astype(jnp.int32)

  def distance_to(index):
    return norms - 2.0 * features @ features[index] + norms[index]

  def body(t, carry):
    chosen, nearest = carry
    pick = jnp.argmax(jnp.where(valid, nearest, -jnp.inf)).astype(jnp.int32)
    return chosen.at[t].set(pick), jnp.minimum(nearest, distance_to(pick))

  chosen = jnp.zeros((ipc,), jnp.int32).at[0].set(first)
  return lax.fori_loop(1, ipc, body, (chosen, distance_to(first)))[0]


def select_herding(features: jax.Array, counts: jax.Array, ipc: int) -> jax.Array:
  """int32 [K, ipc] herding selections from class embeddings [K, M, F] and counts [K]."""
  return jax.jit(jax.vmap(_herd_class, in_axes=(0, 0, None)), static_argnums=2)(
    features, counts, ipc
  )


def select_kcenter(key: jax.Array, features: jax.Array, counts: jax.Array, ipc: int) -> jax.Array:
  """int32 [K, ipc] k-center selections from class embeddings [K, M, F] and counts [K]."""
  keys = jax.random.split(key, features.shape[0])
  return jax.jit(jax.vmap(_kcenter_class, in_axes=(0, 0, 0, None)), static_argnums=3)(
    keys, features, counts, ipc
  )


def feature_params(
  key: jax.Array,
  model: ConvNet,
  spec: DatasetSpec,
  config: CoresetConfig,
  images: np.ndarray,
  labels: np.ndarray,
) -> Params:
  """The embedding net's variables: trained on (images uint8 [N, H, W, C], labels) or fresh."""
  if config.feature_net not in FEATURE_NETS:
    raise ValueError(f'unknown feature_net {config.feature_net!r}; choose from {FEATURE_NETS}')
  if config.feature_net == 'random' or config.feature_epochs == 0:
    return init_params(model, spec, key)
  recipe = TrainRecipe(epochs=config.feature_epochs, published_loop=False)
  pixels = np.asarray(images, np.float32) / 255.0
  stacked = train_seeds(key[None], pixels, np.asarray(labels, np.int32), recipe, model, spec)
  return jax.tree.map(lambda leaf: leaf[0], stacked)


def class_features(
  model: ConvNet, params: Params, data: ClassIndexedData, spec: DatasetSpec, batch: int
) -> jax.Array:
  """float32 [K, M, F]: the embedding of every (padded) slot of the class-indexed set."""
  num_classes, max_count = data.images.shape[:2]
  flat = data.images.reshape(num_classes * max_count, *data.images.shape[2:])
  embed = jax.jit(lambda p, x: embed_all(model, p, to_normalized(spec, x), batch))
  return embed(params, flat).reshape(num_classes, max_count, -1)


def gather_selection(data: ClassIndexedData, spec: DatasetSpec, selection: jax.Array) -> jax.Array:
  """Normalised float32 [K·ipc, H, W, C] of the selected [K, ipc] positions, class-major."""
  images = jax.vmap(lambda row, index: row[index])(data.images, selection)
  return to_normalized(spec, images.reshape(-1, *images.shape[2:]))

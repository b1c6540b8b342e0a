"""Distribution Matching (DM; Zhao & Bilen, WACV 2023), as its official code runs it.

Every iteration (VICO-UoE/DatasetCondensation `main_DM.py`, ConvNet branch):

  1. a freshly, randomly initialised ConvNet (PyTorch's default init);
  2. for every class c: n = `batch_real` random real images of c (distinct; all
     of c when it has fewer) and the class's `ipc` synthetic images, both
     augmented by DSA with one shared seed (`siamese_augment`: one op and one
     parameter draw for both batches);
  3. loss = Σ_c ‖mean(embed(real_c)) − mean(embed(syn_c))‖², embed = the
     ConvNet's features before the classifier, real embeddings not differentiated;
  4. one SGD step (lr `learning_rate`, momentum 0.5, PyTorch semantics) on the
     synthetic images, which live in mean/std-normalised space.

Synthetic images start as random real images of their class (`init='real'`,
distinct per class) or N(0, 1) noise. Official defaults: Iteration 20000,
lr_img 1, batch_real 256, DSA `color_crop_cutout_flip_scale_rotate`.

Here all classes are matched in one jitted step: each class's loss and its
gradient (which touches only that class's images) are computed `class_chunk`
classes at a time, each chunk's real and synthetic images embedded as one flat
batch (`class_chunks`).

Deviations from the official code:
  * Iterations: the official loop `for it in range(Iteration + 1)` performs
    Iteration + 1 = 20,001 updates; `iterations` here counts updates, so
    `iterations=20001` reproduces it (`OFFICIAL_ITERATIONS`).
  * Randomness: JAX keys instead of `time.time()`-derived torch seeds and numpy's
    global generator; iteration i uses only `fold_in(key, i)` (resumable bit for bit).
  * DSA: the project's `dsa_augment` (same ops, magnitudes and per-batch shared
    draws); its random streams differ from torch's, as any re-implementation's.
  * No evaluation during distillation (the official code trains 20 models every
    2,000 iterations); evaluation is the benchmark's job.
  * The network is `models/convnet.py`'s ConvNet (BEARD's: width 128, depth 3,
    instance norm, 2×2 average pooling), also for Tiny-ImageNet, whose DM runs
    elsewhere often use depth 4 (`net_depth` changes it).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from beard_jax.data.augment import DEFAULT_STRATEGY
from beard_jax.data.specs import DatasetSpec
from beard_jax.distill import resumable
from beard_jax.distill.class_chunks import (
  augmented_batches,
  class_means,
  default_class_chunk,
  map_class_chunks,
)
from beard_jax.distill.embedding import features
from beard_jax.distill.real_data import ClassIndexedData, check_ipc, sample_class, to_normalized
from beard_jax.models.convnet import ConvNet, init_params

OFFICIAL_ITERATIONS = 20_001
INITS = ('real', 'noise')


class DMConfig(NamedTuple):
  """DM's hyperparameters (official defaults).

  Attributes:
    learning_rate: SGD learning rate of the synthetic images (`lr_img`).
    momentum: SGD momentum of the synthetic images.
    batch_real: real images per class per iteration.
    dsa_strategy: DSA ops (`beard_jax.data.augment`), 'none' for no augmentation.
    init: `real` (random real images of the class) or `noise` (N(0, 1)).
    net_width: ConvNet width.
    net_depth: ConvNet depth.
    class_chunk: classes embedded together per chunk (memory ↔ speed); 0 picks
      `class_chunks.default_class_chunk` (1 on CPU).
  """

  learning_rate: float = 1.0
  momentum: float = 0.5
  batch_real: int = 256
  dsa_strategy: str = DEFAULT_STRATEGY
  init: str = 'real'
  net_width: int = 128
  net_depth: int = 3
  class_chunk: int = 0


class DMState(NamedTuple):
  """Everything a DM run needs to continue.

  Attributes:
    images: [K, ipc, H, W, C] float32, the synthetic set, mean/std-normalised.
    opt_state: the SGD (momentum) state of `images`.
    iteration: int32 [], iterations done.
    key: the run's `jax.random` key; iteration i uses `fold_in(key, i)`.
  """

  images: jax.Array
  opt_state: optax.OptState
  iteration: jax.Array
  key: jax.Array


def real_batch_size(data: ClassIndexedData, batch_real: int) -> int:
  """The static real batch: `batch_real`, or the largest class when that is smaller."""
  return min(batch_real, data.images.shape[1])


def init_from_real(
  key: jax.Array, data: ClassIndexedData, spec: DatasetSpec, ipc: int
) -> jax.Array:
  """[K, ipc, H, W, C] normalised: ipc distinct random real images of each class (traceable).

  Classes must hold ≥ ipc images (`real_data.check_ipc`).
  """
  num_classes = data.images.shape[0]
  keys = jax.random.split(key, num_classes)
  labels = jnp.arange(num_classes)
  images, _ = jax.vmap(lambda k, c: sample_class(k, data, c, ipc))(keys, labels)
  return to_normalized(spec, images)


def image_optimizer(config) -> optax.GradientTransformation:
  """SGD on the synthetic images: `config.learning_rate`, `config.momentum` (DM, DC, DSA)."""
  return optax.sgd(config.learning_rate, momentum=config.momentum or None)


def init_state(
  key: jax.Array, data: ClassIndexedData, spec: DatasetSpec, ipc: int, config: DMConfig
) -> DMState:
  """The state at iteration 0; `key` splits into the initialisation's and the run's keys.

  Raises:
    ValueError: an unknown `init`, or a class with fewer than ipc real images.
  """
  if config.init not in INITS:
    raise ValueError(f'unknown init {config.init!r}; choose from {INITS}')
  check_ipc(data, ipc)
  return init_image_state(key, data, spec, ipc, config)


@functools.partial(jax.jit, static_argnames=('spec', 'ipc', 'config'))
def init_image_state(key, data, spec, ipc, config) -> DMState:
  """A `DMState` at iteration 0 for any method whose config has `init`, `learning_rate`
  and `momentum` (DM, DC, DSA): images from `init`, their SGD state, the run's key."""
  key_init, key_run = jax.random.split(key)
  if config.init == 'real':
    images = init_from_real(key_init, data, spec, ipc)
  else:
    images = jax.random.normal(key_init, (spec.num_classes, ipc, *spec.image_shape), jnp.float32)
  return DMState(images, image_optimizer(config).init(images), jnp.zeros((), jnp.int32), key_run)


def classes_loss(
  syn: jax.Array,
  labels: jax.Array,
  keys: jax.Array,
  params,
  model: ConvNet,
  data: ClassIndexedData,
  spec: DatasetSpec,
  config: DMConfig,
) -> jax.Array:
  """DM losses ‖mean embed(real_c) − mean embed(syn_c)‖² of a chunk of C classes.

  Args:
    syn: [C, ipc, H, W, Ch] the classes' synthetic images, normalised.
    labels: int32 [C] the classes.
    keys: [C] this iteration's key of each class (real draw and the shared DSA draw).
    params: the iteration's ConvNet variables.
    model, data, spec, config: the run's (static except `data`).

  Returns:
    float32 [C]; loss c depends on syn[c] only.
  """
  real_batch = real_batch_size(data, config.batch_real)
  real, syn, valid = augmented_batches(
    keys, labels, syn, data, spec, real_batch, config.dsa_strategy
  )
  real_mean = class_means(features(model, params, real), labels.shape[0], valid)
  syn_mean = class_means(features(model, params, syn), labels.shape[0])
  return jnp.sum(jnp.square(lax.stop_gradient(real_mean) - syn_mean), axis=-1)


def step(
  state: DMState, data: ClassIndexedData, spec: DatasetSpec, config: DMConfig
) -> tuple[DMState, jax.Array]:
  """One DM iteration; returns the new state and Σ_c loss_c (float32 scalar)."""
  num_classes = state.images.shape[0]
  model = ConvNet(num_classes, width=config.net_width, depth=config.net_depth)
  key_net, key_classes = jax.random.split(jax.random.fold_in(state.key, state.iteration))
  params = init_params(model, spec, key_net)

  def losses_and_grads(chunk):
    syn, labels, keys = chunk

    def total(syn):
      losses = classes_loss(syn, labels, keys, params, model, data, spec, config)
      return jnp.sum(losses), losses

    grads, losses = jax.grad(total, has_aux=True)(syn)
    return losses, grads

  labels = jnp.arange(num_classes, dtype=jnp.int32)
  keys = jax.vmap(lambda c: jax.random.fold_in(key_classes, c))(labels)
  chunk = config.class_chunk or default_class_chunk(
    num_classes, real_batch_size(data, config.batch_real), spec.image_size
  )
  losses, grads = map_class_chunks(losses_and_grads, (state.images, labels, keys), chunk)
  updates, opt_state = image_optimizer(config).update(grads, state.opt_state, state.images)
  images = optax.apply_updates(state.images, updates)
  return DMState(images, opt_state, state.iteration + 1, state.key), jnp.sum(losses)


@functools.partial(jax.jit, static_argnames=('spec', 'config'))
def run_chunk(
  state: DMState, stop: jax.Array, data: ClassIndexedData, spec: DatasetSpec, config: DMConfig
) -> tuple[DMState, jax.Array, jax.Array]:
  """Iterations `state.iteration .. stop - 1` in one `lax.while_loop`.

  Returns:
    The state at `stop`, the sum of the per-iteration losses Σ_c loss_c, and the
    count to divide it by (iterations × K) for the mean loss per class.
  """

  state, loss_sum, done = resumable.iterate_until(
    lambda state: step(state, data, spec, config), state, stop
  )
  return state, loss_sum, (done * state.images.shape[0]).astype(jnp.float32)

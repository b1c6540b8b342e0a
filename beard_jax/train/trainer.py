"""One whole training run as a pure function, and many seeds of it as one program.

`train_one(key, images, labels, recipe, model, spec)` runs the complete recipe
inside `lax.fori_loop`s, so that

    train = functools.partial(train_one, recipe=..., model=..., spec=...)
    jax.jit(jax.vmap(train, in_axes=(0, None, None)))(keys, images, labels)

compiles ONE program that trains N seeds side by side (`train_seeds` does this).

Randomness, all from `key` (the contract the tests rely on):
  key_init, key_shuffle, key_augment, key_attack = jax.random.split(key, 4)
  * parameters: `init_params(model, spec, key_init)`;
  * epoch e's order: `jax.random.permutation(fold_in(key_shuffle, e), N)`;
  * batch b of epoch e: DSA with `fold_in(fold_in(key_augment, e), b)`, the
    attack (adversarial training) with `fold_in(fold_in(key_attack, e), b)`.

Each epoch splits the shuffled set into ceil(N / batch) batches, the last one
smaller, as PyTorch's `DataLoader(shuffle=True)`; to keep shapes static the last
batch is padded and the padding masked out of the mean loss. A batch larger
than the set is the whole set.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import Mesh

from beard_jax import sharding
from beard_jax.data.augment import dsa_augment
from beard_jax.data.specs import DatasetSpec
from beard_jax.models.convnet import (
  ConvNet,
  Params,
  denormalize,
  init_params,
  make_apply_fn,
  normalize,
)
from beard_jax.train.recipes import TrainRecipe, decay_epoch, make_optimizer, num_epochs

# attack(apply_fn, params, x, y, key) -> x_adv (see docs/CONTRACTS.md).
Attack = Callable[..., jax.Array]

ATTACK_SPACES = ('normalized', 'pixels')


def _cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example cross-entropy: int labels [B] or soft label rows [B, K]."""
  if labels.ndim == 1:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  return optax.softmax_cross_entropy(logits, labels)


def _check_inputs(images: jax.Array, labels: jax.Array, model: ConvNet, spec: DatasetSpec):
  if images.ndim != 4 or images.shape[1:] != spec.image_shape:
    raise ValueError(
      f'expected images [N, {", ".join(map(str, spec.image_shape))}] for {spec.name}, '
      f'got {images.shape}'
    )
  if labels.shape[0] != images.shape[0] or labels.ndim not in (1, 2):
    raise ValueError(f'expected labels [N] or [N, K] for N={images.shape[0]}, got {labels.shape}')
  if labels.ndim == 2 and labels.shape[1] != model.num_classes:
    raise ValueError(f'soft labels have {labels.shape[1]} classes, the model {model.num_classes}')


def train_one(
  key: jax.Array,
  images: jax.typing.ArrayLike,
  labels: jax.typing.ArrayLike,
  recipe: TrainRecipe,
  model: ConvNet,
  spec: DatasetSpec,
  adversarial_attack: Attack | None = None,
  attack_input_space: str = 'normalized',
  return_loss_sums: bool = False,
) -> Params | tuple[Params, jax.Array]:
  """Trains a fresh model on a (distilled) set with `recipe`; pure, jit- and vmap-able.

  Args:
    key: a `jax.random` key: the seed of the whole run (init, shuffles, DSA, attack).
    images: [N, H, W, C] float32 at pixel scale (`x·std + mean`; distilled images
      may leave [0, 1]). They are normalised with `spec`, then augmented: DSA acts
      on normalised tensors, as in the reference.
    labels: int [N] class indices, or float32 [N, K] soft labels (rows summing to 1).
    recipe: the training recipe (static).
    model: the ConvNet (static); the returned params are for `model.apply` on
      normalised input, i.e. `make_apply_fn(model, spec, 'normalized')`.
    spec: the dataset (static): image shape and normalisation.
    adversarial_attack: None, or `attack(apply_fn, params, x, y, key) -> x_adv`; each
      (augmented) batch is then replaced by its adversarial version and the loss
      is computed on it alone (PROTOCOL.md §4, "w/ AT"). Soft labels are handed to
      the attack as their argmax.
    attack_input_space: the space the attack works in: `normalized` (the `beard`
      protocol: apply_fn takes normalised x, the attack sees normalised tensors) or
      `pixels` (the `standard` protocol: the attack sees `x·std + mean` and an
      apply_fn that normalises inside).
    return_loss_sums: also return the per-epoch sums of the training loss.

  Returns:
    The trained Flax variables `{'params': ...}` (the final epoch's), and with
    `return_loss_sums` also [num_epochs(recipe)] float32: epoch e's summed
    per-example loss on its augmented (or adversarial) batches; divide by N.

  Raises:
    ValueError: shapes that do not fit the model and spec, an unknown attack space.
  """
  images = jnp.asarray(images, jnp.float32)
  labels = jnp.asarray(labels)
  _check_inputs(images, labels, model, spec)
  if attack_input_space not in ATTACK_SPACES:
    raise ValueError(f'unknown attack_input_space {attack_input_space!r}; choose {ATTACK_SPACES}')
  if labels.ndim == 2:
    labels = labels.astype(jnp.float32)

  num_examples = images.shape[0]
  batch_size = min(recipe.batch_size, num_examples)
  batches_per_epoch = math.ceil(num_examples / batch_size)
  padded_size = batches_per_epoch * batch_size
  epochs = num_epochs(recipe)
  first_decayed = decay_epoch(recipe)
  decayed_lr = recipe.learning_rate * recipe.lr_decay_factor

  normalized = normalize(spec, images)
  key_init, key_shuffle, key_augment, key_attack = jax.random.split(key, 4)
  params = init_params(model, spec, key_init)
  optimizer = make_optimizer(recipe)
  opt_state = optimizer.init(params)
  attack_apply_fn = make_apply_fn(model, spec, attack_input_space)

  def batch_loss(params, x, y, mask):
    per_example = _cross_entropy(model.apply(params, x), y)
    loss_sum = jnp.sum(per_example * mask)
    return loss_sum / jnp.sum(mask), loss_sum

  grad_fn = jax.grad(batch_loss, has_aux=True)

  def train_step(b, carry, epoch, order):
    params, opt_state, loss_sum = carry
    index = lax.dynamic_slice_in_dim(order, b * batch_size, batch_size)
    mask = (b * batch_size + jnp.arange(batch_size) < num_examples).astype(jnp.float32)
    x, y = normalized[index], labels[index]
    if recipe.augmentation:
      x = dsa_augment(
        jax.random.fold_in(jax.random.fold_in(key_augment, epoch), b), x, recipe.augmentation
      )
    if adversarial_attack is not None:
      attack_key = jax.random.fold_in(jax.random.fold_in(key_attack, epoch), b)
      y_hard = y if y.ndim == 1 else jnp.argmax(y, axis=-1)
      if attack_input_space == 'pixels':
        x = normalize(
          spec,
          adversarial_attack(attack_apply_fn, params, denormalize(spec, x), y_hard, attack_key),
        )
      else:
        x = adversarial_attack(attack_apply_fn, params, x, y_hard, attack_key)
      x = lax.stop_gradient(x)
    grads, step_loss_sum = grad_fn(params, x, y, mask)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss_sum + step_loss_sum

  def train_epoch(epoch, carry):
    params, opt_state, loss_sums = carry
    # The reference builds a new optimizer at the decay: fresh state (momentum 0).
    fresh = optimizer.init(params)
    opt_state = jax.tree.map(
      lambda new, old: jnp.where(epoch == first_decayed, new, old), fresh, opt_state
    )
    learning_rate = jnp.where(epoch >= first_decayed, decayed_lr, recipe.learning_rate)
    opt_state = opt_state._replace(
      hyperparams={**opt_state.hyperparams, 'learning_rate': learning_rate.astype(jnp.float32)}
    )
    order = jax.random.permutation(jax.random.fold_in(key_shuffle, epoch), num_examples)
    order = jnp.concatenate([order, order[: padded_size - num_examples]])
    step = functools.partial(train_step, epoch=epoch, order=order)
    params, opt_state, loss_sum = lax.fori_loop(
      0, batches_per_epoch, step, (params, opt_state, jnp.zeros((), jnp.float32))
    )
    return params, opt_state, loss_sums.at[epoch].set(loss_sum)

  loss_sums = jnp.zeros((epochs,), jnp.float32)
  params, _, loss_sums = lax.fori_loop(0, epochs, train_epoch, (params, opt_state, loss_sums))
  if return_loss_sums:
    return params, loss_sums
  return params


@functools.lru_cache(maxsize=32)
def make_train_fn(
  recipe: TrainRecipe,
  model: ConvNet,
  spec: DatasetSpec,
  adversarial_attack: Attack | None = None,
  attack_input_space: str = 'normalized',
  return_loss_sums: bool = False,
  seed_axis: str = 'vmap',
) -> Callable[..., Params]:
  """`train(keys, images, labels) -> stacked params`: one jitted program for N seeds.

  keys: [N] `jax.random` keys; images/labels as `train_one` (shared by all seeds).
  Every leaf of the result has a leading seed axis [N, ...]. Compiles once per
  (number of seeds, set shape); the jitted function is cached per argument set
  (all hashable), so repeated `train_seeds` calls reuse the compiled program.

  seed_axis: `vmap` batches the seeds (every conv becomes a grouped conv with
  one group per seed: fast on GPU/TPU); `map` runs them one after the other
  inside the same program (`lax.map`), which XLA:CPU runs faster, since its
  grouped convolutions are slow (measured: 5 vmapped seeds 9.9 s/epoch against
  0.28 s/epoch for one seed, IPC 10, 2-core CPU). Both give the same numbers.
  """
  bound = functools.partial(
    train_one,
    recipe=recipe,
    model=model,
    spec=spec,
    adversarial_attack=adversarial_attack,
    attack_input_space=attack_input_space,
    return_loss_sums=return_loss_sums,
  )
  if seed_axis == 'vmap':
    return jax.jit(jax.vmap(bound, in_axes=(0, None, None)))
  if seed_axis == 'map':
    return jax.jit(lambda keys, images, labels: lax.map(lambda k: bound(k, images, labels), keys))
  raise ValueError(f"unknown seed_axis {seed_axis!r}; choose from ('vmap', 'map')")


def default_seed_axis() -> str:
  """`map` on CPU (grouped convolutions are slow there), `vmap` on GPU and TPU."""
  return 'map' if jax.default_backend() == 'cpu' else 'vmap'


def seed_keys(seeds: Sequence[int] | jax.Array) -> jax.Array:
  """[N] typed `jax.random` keys: `jax.random.key(s)` per int seed; keys pass through."""
  if isinstance(seeds, jax.Array) and jax.dtypes.issubdtype(seeds.dtype, jax.dtypes.prng_key):
    return seeds
  return jnp.stack([jax.random.key(int(s)) for s in seeds])


def train_seeds(
  seeds: Sequence[int] | jax.Array,
  images: jax.typing.ArrayLike,
  labels: jax.typing.ArrayLike,
  recipe: TrainRecipe,
  model: ConvNet,
  spec: DatasetSpec,
  adversarial_attack: Attack | None = None,
  attack_input_space: str = 'normalized',
  seed_axis: str | None = None,
  mesh: Mesh | None = None,
) -> Params:
  """Trains one model per seed on the same set, all seeds in one jitted program.

  Args:
    seeds: int seeds, or an array of [N] `jax.random` keys.
    images, labels, recipe, model, spec, adversarial_attack, attack_input_space:
      as `train_one`.
    seed_axis: `vmap` or `map` (see `make_train_fn`); None picks the backend's
      faster one (`default_seed_axis`).
    mesh: a 1-D device mesh to shard the seed axis over (N must be a multiple of
      its size); seeds are then vmapped and `jit` splits them over the devices.

  Returns:
    Stacked Flax variables, every leaf [N, ...] and readable on every process (gathered
    when the seeds were sharded over several), for `model.apply` on normalised input.

  Raises:
    FloatingPointError: a seed's trained parameters contain NaN or inf.
  """
  keys = seed_keys(seeds)
  if mesh is not None:
    sharding.check_divisible(keys.shape[0], mesh, 'the number of seeds')
    keys = sharding.global_array(keys, sharding.leading_axis_sharding(mesh))
    seed_axis = 'vmap'
  train = make_train_fn(
    recipe,
    model,
    spec,
    adversarial_attack,
    attack_input_space,
    seed_axis=seed_axis or default_seed_axis(),
  )
  stacked = train(keys, jnp.asarray(images, jnp.float32), jnp.asarray(labels))
  stacked = sharding.gather_across_processes(stacked)
  finite = jax.tree.map(
    lambda leaf: np.asarray(jnp.all(jnp.isfinite(leaf), axis=tuple(range(1, leaf.ndim)))), stacked
  )
  bad = ~np.all(np.stack(jax.tree.leaves(finite)), axis=0)
  if bad.any():
    raise FloatingPointError(
      f'training diverged (NaN/inf parameters) for seeds {np.nonzero(bad)[0]}'
    )
  return stacked

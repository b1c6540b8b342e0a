"""Training runs as pure functions: one whole run, or a chunk of its epochs, for N seeds.

`train_one(key, images, labels, recipe, model, spec)` runs the complete recipe
inside `lax.fori_loop`s, so that

    train = functools.partial(train_one, recipe=..., model=..., spec=...)
    jax.jit(jax.vmap(train, in_axes=(0, None, None)))(keys, images, labels)

compiles ONE program that trains N seeds side by side (`make_train_fn`). The same
run also splits into `init_state` and `train_epochs(state, ..., start, stop)`:
`make_chunk_fn` compiles one program that trains any range of epochs (the bounds
are traced), and `beard_jax.train.loop.train_seeds` drives it from the host in
chunks of a few seconds, to report progress and stop on a NaN loss. Chunks change
nothing: every epoch depends only on the state and its absolute index.

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
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

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
SEED_AXES = ('vmap', 'map')


class TrainState(NamedTuple):
  """One seed's training run between two epochs (every leaf [S, ...] when seeds are stacked).

  Attributes:
    params: the Flax variables `{'params': ...}`.
    opt_state: the `make_optimizer(recipe)` state, the learning rate injected.
    loss_sums: [num_epochs(recipe)] float32: epoch e's summed per-example loss on its
      augmented (or adversarial) batches, 0 for the epochs not trained yet; divide by N.
  """

  params: Params
  opt_state: optax.OptState
  loss_sums: jax.Array


def _cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example cross-entropy: int labels [B] or soft label rows [B, K]."""
  if labels.ndim == 1:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  return optax.softmax_cross_entropy(logits, labels)


def prepare_inputs(
  images: jax.typing.ArrayLike, labels: jax.typing.ArrayLike, model: ConvNet, spec: DatasetSpec
) -> tuple[jax.Array, jax.Array]:
  """Checks a training set and normalises it, as `train_epochs` takes it.

  Args:
    images: [N, H, W, C] float32 at pixel scale (`x·std + mean`; distilled images
      may leave [0, 1]).
    labels: int [N] class indices, or [N, K] soft labels (rows summing to 1).
    model, spec: the ConvNet and the dataset the set is for.

  Returns:
    (normalised images [N, H, W, C] float32, labels: int [N] or float32 [N, K]).

  Raises:
    ValueError: shapes that do not fit the model and spec.
  """
  images = jnp.asarray(images, jnp.float32)
  labels = jnp.asarray(labels)
  if images.ndim != 4 or images.shape[1:] != spec.image_shape:
    raise ValueError(
      f'expected images [N, {", ".join(map(str, spec.image_shape))}] for {spec.name}, '
      f'got {images.shape}'
    )
  if labels.shape[0] != images.shape[0] or labels.ndim not in (1, 2):
    raise ValueError(f'expected labels [N] or [N, K] for N={images.shape[0]}, got {labels.shape}')
  if labels.ndim == 2 and labels.shape[1] != model.num_classes:
    raise ValueError(f'soft labels have {labels.shape[1]} classes, the model {model.num_classes}')
  if labels.ndim == 2:
    labels = labels.astype(jnp.float32)
  return normalize(spec, images), labels


def init_state(
  key: jax.Array, recipe: TrainRecipe, model: ConvNet, spec: DatasetSpec
) -> TrainState:
  """The state before epoch 0: parameters from `key_init`, a fresh optimizer, no losses."""
  params = init_params(model, spec, jax.random.split(key, 4)[0])
  opt_state = make_optimizer(recipe).init(params)
  return TrainState(params, opt_state, jnp.zeros((num_epochs(recipe),), jnp.float32))


def _make_step_fn(key_augment, key_attack, normalized, labels, recipe, model, spec, attack, space):
  """`step(b, state, epoch, order) -> state`: one optimizer step on batch b of `order`.

  Args:
    key_augment, key_attack: the run's DSA and attack keys (folded with epoch, then b).
    normalized: [N, H, W, C] float32 normalised images; labels: int [N] or float32 [N, K].
    recipe, model, spec, attack, space: as `train_epochs` (`attack`: adversarial_attack,
      `space`: attack_input_space).

  `order` is the epoch's int32 [ceil(N / batch) · batch] permutation, padded; `step` adds
  the batch's summed loss to `state.loss_sums[epoch]`.
  """
  num_examples = normalized.shape[0]
  batch_size = min(recipe.batch_size, num_examples)
  optimizer = make_optimizer(recipe)
  attack_apply_fn = make_apply_fn(model, spec, space)

  def batch_loss(params, x, y, mask):
    per_example = _cross_entropy(model.apply(params, x), y)
    loss_sum = jnp.sum(per_example * mask)
    return loss_sum / jnp.sum(mask), loss_sum

  grad_fn = jax.grad(batch_loss, has_aux=True)

  def adversarial(params, x, y, key):
    y_hard = y if y.ndim == 1 else jnp.argmax(y, axis=-1)
    if space == 'pixels':
      x = normalize(spec, attack(attack_apply_fn, params, denormalize(spec, x), y_hard, key))
    else:
      x = attack(attack_apply_fn, params, x, y_hard, key)
    return lax.stop_gradient(x)

  def step(b, state, epoch, order):
    index = lax.dynamic_slice_in_dim(order, b * batch_size, batch_size)
    mask = (b * batch_size + jnp.arange(batch_size) < num_examples).astype(jnp.float32)
    x, y = normalized[index], labels[index]
    if recipe.augmentation:
      x = dsa_augment(
        jax.random.fold_in(jax.random.fold_in(key_augment, epoch), b), x, recipe.augmentation
      )
    if attack is not None:
      x = adversarial(
        state.params, x, y, jax.random.fold_in(jax.random.fold_in(key_attack, epoch), b)
      )
    grads, step_loss_sum = grad_fn(state.params, x, y, mask)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    return TrainState(
      optax.apply_updates(state.params, updates),
      opt_state,
      state.loss_sums.at[epoch].add(step_loss_sum),
    )

  return step


def train_epochs(
  state: TrainState,
  key: jax.Array,
  normalized: jax.Array,
  labels: jax.Array,
  start: int | jax.Array,
  stop: int | jax.Array,
  recipe: TrainRecipe,
  model: ConvNet,
  spec: DatasetSpec,
  adversarial_attack: Attack | None = None,
  attack_input_space: str = 'normalized',
) -> TrainState:
  """Trains epochs [start, stop) of one run; pure, jit- and vmap-able, the bounds traceable.

  Epoch e uses e's keys and learning rate whatever chunk it falls in, and resets the
  optimizer state at the decay epoch, so that `train_epochs(train_epochs(s, ..., 0, k),
  ..., k, E)` is `train_epochs(s, ..., 0, E)`.

  Args:
    state: the run's state after epoch start - 1 (`init_state` for start = 0).
    key: the seed of the whole run (the same for every chunk).
    normalized: [N, H, W, C] float32 normalised images (`prepare_inputs`). DSA acts on
      normalised tensors, as in the reference.
    labels: int [N] class indices, or float32 [N, K] soft labels.
    start, stop: int32 scalars, 0 <= start <= stop <= num_epochs(recipe).
    recipe, model, spec: static: the recipe, the ConvNet, the dataset.
    adversarial_attack: None, or `attack(apply_fn, params, x, y, key) -> x_adv`; each
      (augmented) batch is then replaced by its adversarial version and the loss is
      computed on it alone (PROTOCOL.md §4, "w/ AT"). Soft labels reach the attack as
      their argmax.
    attack_input_space: `normalized` (the `beard` protocol: the attack sees normalised
      tensors) or `pixels` (the `standard` protocol: it sees `x·std + mean` and an
      apply_fn that normalises inside).

  Returns:
    The state after epoch stop - 1, its `loss_sums[start:stop]` filled in.

  Raises:
    ValueError: an unknown attack space.
  """
  if attack_input_space not in ATTACK_SPACES:
    raise ValueError(f'unknown attack_input_space {attack_input_space!r}; choose {ATTACK_SPACES}')
  num_examples = normalized.shape[0]
  batch_size = min(recipe.batch_size, num_examples)
  batches_per_epoch = math.ceil(num_examples / batch_size)
  padded_size = batches_per_epoch * batch_size
  first_decayed = decay_epoch(recipe)
  decayed_lr = recipe.learning_rate * recipe.lr_decay_factor
  optimizer = make_optimizer(recipe)
  _, key_shuffle, key_augment, key_attack = jax.random.split(key, 4)
  step_fn = _make_step_fn(
    key_augment,
    key_attack,
    normalized,
    labels,
    recipe,
    model,
    spec,
    adversarial_attack,
    attack_input_space,
  )

  def train_epoch(epoch, state):
    # The reference builds a new optimizer at the decay: fresh state (momentum 0).
    fresh = optimizer.init(state.params)
    opt_state = jax.tree.map(
      lambda new, old: jnp.where(epoch == first_decayed, new, old), fresh, state.opt_state
    )
    learning_rate = jnp.where(epoch >= first_decayed, decayed_lr, recipe.learning_rate)
    opt_state = opt_state._replace(
      hyperparams={**opt_state.hyperparams, 'learning_rate': learning_rate.astype(jnp.float32)}
    )
    order = jax.random.permutation(jax.random.fold_in(key_shuffle, epoch), num_examples)
    order = jnp.concatenate([order, order[: padded_size - num_examples]])
    step = functools.partial(step_fn, epoch=epoch, order=order)
    return lax.fori_loop(0, batches_per_epoch, step, state._replace(opt_state=opt_state))

  return lax.fori_loop(start, stop, train_epoch, state)


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
      may leave [0, 1]); normalised with `spec`, then augmented.
    labels: int [N] class indices, or float32 [N, K] soft labels (rows summing to 1).
    recipe: the training recipe (static).
    model: the ConvNet (static); the returned params are for `model.apply` on
      normalised input, i.e. `make_apply_fn(model, spec, 'normalized')`.
    spec: the dataset (static): image shape and normalisation.
    adversarial_attack, attack_input_space: as `train_epochs`.
    return_loss_sums: also return the per-epoch sums of the training loss.

  Returns:
    The trained Flax variables `{'params': ...}` (the final epoch's), and with
    `return_loss_sums` also [num_epochs(recipe)] float32: epoch e's summed
    per-example loss on its augmented (or adversarial) batches; divide by N.

  Raises:
    ValueError: shapes that do not fit the model and spec, an unknown attack space.
  """
  normalized, labels = prepare_inputs(images, labels, model, spec)
  state = init_state(key, recipe, model, spec)
  state = train_epochs(
    state,
    key,
    normalized,
    labels,
    0,
    num_epochs(recipe),
    recipe,
    model,
    spec,
    adversarial_attack,
    attack_input_space,
  )
  if return_loss_sums:
    return state.params, state.loss_sums
  return state.params


def _over_seeds(fn: Callable, seed_axis: str) -> Callable:
  """`g(per_seed, *shared)`: `fn(per_seed[i], *shared)` for every i of per_seed's leading axis.

  `vmap` batches the seeds (every conv becomes a grouped conv with one group per
  seed: fast on GPU/TPU); `map` runs them one after the other in the same program
  (`lax.map`), which XLA:CPU runs faster, since its grouped convolutions are slow
  (`bench/RESULTS.md`). Both give the same numbers.
  """
  if seed_axis == 'vmap':
    return lambda per_seed, *shared: jax.vmap(lambda one: fn(one, *shared))(per_seed)
  if seed_axis == 'map':
    return lambda per_seed, *shared: lax.map(lambda one: fn(one, *shared), per_seed)
  raise ValueError(f'unknown seed_axis {seed_axis!r}; choose from {SEED_AXES}')


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
  """`train(keys, images, labels) -> stacked params`: the whole run of N seeds, one program.

  keys: [N] `jax.random` keys; images/labels as `train_one` (shared by all seeds).
  Every leaf of the result has a leading seed axis [N, ...]. Compiles once per
  (number of seeds, set shape); cached per argument set (all hashable). seed_axis:
  `vmap` or `map` (see `_over_seeds`). Reports nothing until it ends: `train_seeds`
  runs the same epochs in chunks, with progress.
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
  return jax.jit(_over_seeds(bound, seed_axis))


@functools.lru_cache(maxsize=32)
def make_init_fn(
  recipe: TrainRecipe, model: ConvNet, spec: DatasetSpec, seed_axis: str = 'vmap'
) -> Callable[[jax.Array], TrainState]:
  """`init(keys [N]) -> TrainState` of N seeds (leaves [N, ...]), jitted: `init_state` per seed."""
  return jax.jit(
    _over_seeds(functools.partial(init_state, recipe=recipe, model=model, spec=spec), seed_axis)
  )


@functools.lru_cache(maxsize=32)
def make_chunk_fn(
  recipe: TrainRecipe,
  model: ConvNet,
  spec: DatasetSpec,
  adversarial_attack: Attack | None = None,
  attack_input_space: str = 'normalized',
  seed_axis: str = 'vmap',
) -> Callable[..., TrainState]:
  """`chunk(states, keys, normalized, labels, start, stop) -> states`: epochs [start, stop).

  `train_epochs` for N seeds in one jitted program: states and keys have a leading
  seed axis [N, ...], normalized/labels are shared (`prepare_inputs`), start and stop
  are int scalars, traced, so ONE program serves every chunk (compiled once per
  number of seeds and set shape). `states` is donated: its buffers hold the result.
  """

  def one_seed(state_and_key, normalized, labels, start, stop):
    state, key = state_and_key
    return train_epochs(
      state,
      key,
      normalized,
      labels,
      start,
      stop,
      recipe,
      model,
      spec,
      adversarial_attack,
      attack_input_space,
    )

  over_seeds = _over_seeds(one_seed, seed_axis)

  def chunk(states, keys, normalized, labels, start, stop):
    return over_seeds((states, keys), normalized, labels, start, stop)

  return jax.jit(chunk, donate_argnums=0)


def default_seed_axis() -> str:
  """`map` on CPU (grouped convolutions are slow there), `vmap` on GPU and TPU."""
  return 'map' if jax.default_backend() == 'cpu' else 'vmap'


def seed_keys(seeds: Sequence[int] | jax.Array) -> jax.Array:
  """[N] typed `jax.random` keys: `jax.random.key(s)` per int seed; keys pass through."""
  if isinstance(seeds, jax.Array) and jax.dtypes.issubdtype(seeds.dtype, jax.dtypes.prng_key):
    return seeds
  return jnp.stack([jax.random.key(int(s)) for s in seeds])

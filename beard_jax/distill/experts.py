"""Expert trajectories for MTT: ConvNets trained on the real set, parameters saved per epoch.

MTT's `buffer.py` trains `num_experts` ConvNets one after the other (SGD lr 0.01,
no momentum, no weight decay, batch 256, DSA on every batch, 50 epochs, no decay)
and saves every expert's parameters before epoch 0 and after each epoch, ten
experts per `replay_buffer_<n>.pt`. Here a group of `group_size` experts trains
side by side in one program (the trainer's seed axis: vmapped on accelerators,
mapped on CPU) with the project's trainer (`train.trainer.train_epochs`, whose
randomness contract makes every epoch depend only on the state and its index),
and each group is one resumable run (`resumable.run_iterations`, one iteration =
one epoch) whose final checkpoint is the group's buffer: a rerun loads it and
trains nothing; a killed run resumes at its last saved epoch.

A trajectory is float32 [epochs + 1, P]: the parameters flattened by
`jax.flatten_util.ravel_pytree` (P = 320,010 for the CIFAR-10 ConvNet), entry 0
the initialisation, entry e + 1 after epoch e.
"""

from __future__ import annotations

import functools
import os
import pathlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from beard_jax import provenance
from beard_jax.data.augment import DEFAULT_STRATEGY
from beard_jax.data.specs import DatasetSpec
from beard_jax.distill import resumable
from beard_jax.models.convnet import ConvNet
from beard_jax.train import recipes, trainer


class ExpertConfig(NamedTuple):
  """How MTT's experts train (`buffer.py` defaults).

  Attributes:
    num_experts: experts in the buffer (official 100).
    train_epochs: epochs per expert (official 50); distillation reads epochs up to
      max_start_epoch + expert_epochs only.
    learning_rate: SGD learning rate (`lr_teacher`, 0.01).
    batch_size: `batch_train`, 256.
    dsa_strategy: DSA on every training batch ('none' for none).
    group_size: experts trained side by side and saved together (official files: 10).
  """

  num_experts: int = 100
  train_epochs: int = 50
  learning_rate: float = 0.01
  batch_size: int = 256
  dsa_strategy: str = DEFAULT_STRATEGY
  group_size: int = 10


class ExpertState(NamedTuple):
  """A group of experts between two epochs (resumable: `iteration` counts epochs).

  Attributes:
    train: the trainer's states, leaves [G, ...].
    keys: [G] the experts' run keys.
    trajectory: float32 [G, epochs + 1, P], filled up to entry `iteration`.
    iteration: int32 [], epochs trained.
  """

  train: trainer.TrainState
  keys: jax.Array
  trajectory: jax.Array
  iteration: jax.Array


def expert_recipe(config: ExpertConfig) -> recipes.TrainRecipe:
  """`buffer.py`'s training: SGD without momentum or decay, DSA, no schedule."""
  return recipes.TrainRecipe(
    optimizer='sgd',
    learning_rate=config.learning_rate,
    momentum=0.0,
    weight_decay=0.0,
    batch_size=config.batch_size,
    epochs=config.train_epochs,
    lr_decay=False,
    published_loop=False,
    augmentation=None if config.dsa_strategy in ('', 'none') else config.dsa_strategy,
  )


def flatten_params(params) -> jax.Array:
  """float32 [P]: the Flax variables in `ravel_pytree` order (the trajectories' layout)."""
  return ravel_pytree(params)[0]


def _group_sizes(config: ExpertConfig) -> list[int]:
  full, rest = divmod(config.num_experts, config.group_size)
  return [config.group_size] * full + ([rest] if rest else [])


def _train_group(
  keys: jax.Array,
  inputs: jax.Array,
  labels: jax.Array,
  model: ConvNet,
  spec: DatasetSpec,
  config: ExpertConfig,
  options: resumable.RunOptions,
) -> tuple[np.ndarray, float]:
  """Trains (or loads) one group: its trajectories float32 [G, epochs + 1, P] and its
  training wall seconds (earlier processes included)."""
  recipe = expert_recipe(config)
  seed_axis = trainer.default_seed_axis()
  init = trainer.make_init_fn(recipe, model, spec, seed_axis)
  train_chunk = trainer.make_chunk_fn(recipe, model, spec, seed_axis=seed_axis)
  flatten = jax.jit(jax.vmap(flatten_params))
  states = init(keys)
  first = flatten(states.params)
  trajectory = jnp.zeros((keys.shape[0], config.train_epochs + 1, first.shape[-1]), jnp.float32)
  initial = ExpertState(states, keys, trajectory.at[:, 0].set(first), jnp.zeros((), jnp.int32))
  num_examples = inputs.shape[0]

  @functools.partial(jax.jit, donate_argnums=0)
  def record(trajectory, params, epoch):
    return trajectory.at[:, epoch + 1].set(jax.vmap(flatten_params)(params))

  def run_chunk(state: ExpertState, stop):
    loss_sum = 0.0
    train, trajectory = state.train, state.trajectory
    start = int(state.iteration)
    for epoch in range(start, int(stop)):
      train = train_chunk(train, state.keys, inputs, labels, epoch, epoch + 1)
      trajectory = record(trajectory, train.params, epoch)
      loss_sum += float(jnp.sum(train.loss_sums[:, epoch])) / num_examples
    done = int(stop) - start
    new = ExpertState(train, state.keys, trajectory, jnp.asarray(stop, jnp.int32))
    return new, jnp.float32(loss_sum), jnp.float32(done * keys.shape[0])

  state, seconds = resumable.run_iterations(run_chunk, initial, config.train_epochs, options)
  return np.asarray(state.trajectory), seconds


def build_buffer(
  key: jax.Array,
  inputs: jax.Array,
  labels: jax.Array,
  model: ConvNet,
  spec: DatasetSpec,
  config: ExpertConfig,
  buffer_dir: str | os.PathLike,
  description: dict,
  epochs_needed: int,
  progress: resumable.ProgressFn,
) -> tuple[jax.Array, float]:
  """Trains the experts (or loads the groups already trained) and returns their trajectories.

  Args:
    key: the buffer's key; expert i of the whole buffer trains with `fold_in(key, i)`.
    inputs: [N, H, W, C] float32, the real set as the model sees it (normalised or ZCA).
    labels: int32 [N].
    model, spec, config: the experts' ConvNet, dataset and training.
    buffer_dir: where the group files live (`group_<g>.npz`, kept after the run).
    description: what identifies the real data and input transform (fingerprinted with
      the config and key; a group file of another buffer is refused, not reused).
    epochs_needed: trajectory entries returned per expert (0 .. epochs_needed).
    progress: progress reports of each group's training.

  Returns:
    float32 [num_experts, epochs_needed + 1, P] on the default device, and the experts'
    training wall seconds (earlier processes included).

  Raises:
    ValueError: epochs_needed > config.train_epochs, or a group file of another buffer.
  """
  if epochs_needed > config.train_epochs:
    raise ValueError(
      f'distillation reads expert epochs up to {epochs_needed}, the experts train '
      f'{config.train_epochs}; raise train_epochs or lower max_start_epoch + expert_epochs'
    )
  pathlib.Path(buffer_dir).mkdir(parents=True, exist_ok=True)
  keys = jnp.stack([jax.random.fold_in(key, i) for i in range(config.num_experts)])
  key_data = np.asarray(jax.random.key_data(key)).tolist()
  parts, first, seconds = [], 0, 0.0
  for group, size in enumerate(_group_sizes(config)):
    fingerprint = provenance.config_hash(
      {**description, 'experts': config._asdict(), 'key_data': key_data, 'group': group}
    )
    options = resumable.RunOptions(
      str(pathlib.Path(buffer_dir) / f'group_{group:03d}.npz'),
      max(1, config.train_epochs // 10),
      fingerprint,
      f'MTT experts {first}-{first + size - 1} of {config.num_experts}',
      progress,
    )
    group_keys = keys[first : first + size]
    trajectory, group_seconds = _train_group(
      group_keys, inputs, labels, model, spec, config, options
    )
    parts.append(jnp.asarray(trajectory[:, : epochs_needed + 1]))
    first, seconds = first + size, seconds + group_seconds
  return jnp.concatenate(parts), seconds

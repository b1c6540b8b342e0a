"""Training N seeds from the host in chunks of epochs: progress, ETA and a NaN stop.

A whole run compiled as one program (`make_train_fn`) says nothing for the minutes
or hours it runs. `train_seeds` runs the same epochs as a host loop over ONE
jitted program that trains a range of epochs (`make_chunk_fn`, the range traced),
the state carried between chunks as a donated `TrainState`. The first chunk is one
epoch; each next one is sized from the last one's speed to take about
`chunk_seconds` (CHUNK_SECONDS by default). After each chunk the host reads the
chunk's losses, stops on a NaN/inf one, and hands a `TrainingReport` to `progress`.
Chunks change nothing: the parameters equal the single program's bit for bit
(tests/train/test_loop.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from beard_jax import sharding
from beard_jax.data.specs import DatasetSpec
from beard_jax.models.convnet import ConvNet, Params
from beard_jax.train.recipes import TrainRecipe
from beard_jax.train.trainer import (
  Attack,
  TrainState,
  default_seed_axis,
  make_chunk_fn,
  make_init_fn,
  prepare_inputs,
  seed_keys,
)

# Chunks last about this long: a progress line per chunk stays within ~30 s, and the
# cost of a chunk boundary stays small. That cost is mostly not the host's turn (a
# dispatch and a loss read) but XLA:CPU's fresh temporary buffer for every program
# run, which the kernel zero-fills page by page (`bench/RESULTS.md`, "Scheduling
# defaults": shorter chunks cost several per cent).
CHUNK_SECONDS = 25.0


class TrainingReport(NamedTuple):
  """Where a run of N seeds stands after a chunk of epochs.

  Attributes:
    epochs_done: epochs trained so far, of `num_epochs`.
    num_epochs: epochs in the whole run (`num_epochs(recipe)`).
    mean_loss: the chunk's mean per-example training loss, over its epochs and all seeds.
    train_seconds: wall time of the chunks so far.
    compile_seconds: wall time of compiling the chunk program, before the first chunk.
  """

  epochs_done: int
  num_epochs: int
  mean_loss: float
  train_seconds: float
  compile_seconds: float


def _seed_names(seeds: Sequence[int] | jax.Array, num_seeds: int) -> list[str]:
  """How errors name the seeds: the int seeds, or `#i` for keys given as an array."""
  if isinstance(seeds, jax.Array) and jax.dtypes.issubdtype(seeds.dtype, jax.dtypes.prng_key):
    return [f'#{i}' for i in range(num_seeds)]
  return [str(int(s)) for s in seeds]


def _check_finite_loss(loss_sums: np.ndarray, first_epoch: int, total: int, names: list[str]):
  """Raises FloatingPointError naming each seed and the first epoch whose loss is NaN/inf.

  loss_sums: [N seeds, L] the chunk's loss sums, epochs first_epoch .. first_epoch + L - 1.
  """
  bad = ~np.isfinite(loss_sums)
  if bad.any():
    where = '; '.join(
      f'seed {names[s]} in epoch {first_epoch + int(np.argmax(bad[s])) + 1}/{total}'
      for s in np.nonzero(bad.any(axis=1))[0]
    )
    raise FloatingPointError(f'training loss is NaN/inf: {where}; training stopped')


def _check_finite_params(stacked: Params, names: list[str]):
  """Raises FloatingPointError naming the seeds whose parameters hold NaN or inf."""
  finite = jax.tree.map(
    lambda leaf: np.asarray(jnp.all(jnp.isfinite(leaf), axis=tuple(range(1, leaf.ndim)))), stacked
  )
  bad = ~np.all(np.stack(jax.tree.leaves(finite)), axis=0)
  if bad.any():
    seeds = ', '.join(names[s] for s in np.nonzero(bad)[0])
    raise FloatingPointError(f'training diverged (NaN/inf parameters) for seeds {seeds}')


def _next_chunk_length(length: int, seconds: float, chunk_seconds: float) -> int:
  """Epochs for the next chunk: about `chunk_seconds` at the last chunk's speed, >= 1.

  Every epoch costs the same, and a first chunk's speed is understated (it also pays
  the first run's start-up), so the speed of the last chunk is a safe guide. The
  length is the same on every process (the primary's), since all run the same programs.
  """
  chosen = max(1, int(chunk_seconds * length / max(seconds, 1e-9)))
  if jax.process_count() > 1:
    chosen = int(multihost_utils.broadcast_one_to_all(np.int32(chosen)))
  return chosen


def _train_in_chunks(
  chunk_fn: Callable[..., TrainState],
  state: TrainState,
  data: tuple[jax.Array, jax.Array, jax.Array],
  names: list[str],
  progress: Callable[[TrainingReport], None] | None,
  chunk_seconds: float,
) -> TrainState:
  """Trains every epoch of `state`'s run as a host loop over `chunk_fn` calls.

  Args:
    chunk_fn: `make_chunk_fn(...)`; it donates the state passed in.
    state: the N seeds' `TrainState` before epoch 0 (leaves [N, ...]).
    data: (keys [N], normalised images [M, H, W, C], labels [M] or [M, K]).
    names: N seed names for errors.
    progress: called with a `TrainingReport` after every chunk, or None.
    chunk_seconds: the wall time to size chunks to; 0 trains one epoch per chunk.

  Returns:
    The state after the last epoch.

  Raises:
    FloatingPointError: a seed's loss became NaN/inf (checked after every chunk).
  """
  total = state.loss_sums.shape[-1]
  num_examples = data[1].shape[0]
  begin = time.perf_counter()
  state = jax.block_until_ready(chunk_fn(state, *data, 0, 0))  # compiles, trains nothing
  compile_seconds = time.perf_counter() - begin
  epoch, length, train_seconds = 0, 1, 0.0
  while epoch < total:
    stop = epoch + length
    if total - stop < length // 2:  # no short last chunk: its boundary would cost a run
      stop = total
    begin = time.perf_counter()
    state = chunk_fn(state, *data, epoch, stop)
    loss_sums = np.asarray(sharding.gather_across_processes(state.loss_sums))[:, epoch:stop]
    seconds = time.perf_counter() - begin
    train_seconds += seconds
    _check_finite_loss(loss_sums, epoch, total, names)
    if progress is not None:
      mean_loss = float(loss_sums.mean()) / num_examples
      progress(TrainingReport(stop, total, mean_loss, train_seconds, compile_seconds))
    length = _next_chunk_length(stop - epoch, seconds, chunk_seconds)
    epoch = stop
  return state


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
  progress: Callable[[TrainingReport], None] | None = None,
  chunk_seconds: float = CHUNK_SECONDS,
) -> Params:
  """Trains one model per seed on the same set, all seeds in one program, in chunks of epochs.

  Args:
    seeds: int seeds, or an array of [N] `jax.random` keys.
    images, labels, recipe, model, spec, adversarial_attack, attack_input_space:
      as `train_one`.
    seed_axis: `vmap` or `map` (see `make_train_fn`); None picks the backend's
      faster one (`default_seed_axis`).
    mesh: a 1-D device mesh to shard the seed axis over (N must be a multiple of
      its size); seeds are then vmapped and `jit` splits them over the devices.
    progress: called with a `TrainingReport` after every chunk of epochs (e.g.
      `beard_jax.benchmark.progress.TrainingProgress`), on every process.
    chunk_seconds: wall time to size the chunks to (results do not depend on it).

  Returns:
    Stacked Flax variables, every leaf [N, ...] and readable on every process (gathered
    when the seeds were sharded over several), for `model.apply` on normalised input;
    the same numbers as `make_train_fn(...)(keys, images, labels)`.

  Raises:
    ValueError: shapes that do not fit the model and spec, an unknown seed axis.
    FloatingPointError: a seed's loss became NaN/inf (the seed and epoch named), or its
      trained parameters hold NaN or inf.
  """
  keys = seed_keys(seeds)
  names = _seed_names(seeds, keys.shape[0])
  normalized, labels = prepare_inputs(images, labels, model, spec)
  if mesh is not None:
    sharding.check_divisible(keys.shape[0], mesh, 'the number of seeds')
    keys = sharding.global_array(keys, sharding.leading_axis_sharding(mesh))
    normalized, labels = (
      sharding.global_array(np.asarray(a), sharding.replicated(mesh)) for a in (normalized, labels)
    )
    seed_axis = 'vmap'
  seed_axis = seed_axis or default_seed_axis()
  chunk_fn = make_chunk_fn(recipe, model, spec, adversarial_attack, attack_input_space, seed_axis)
  state = make_init_fn(recipe, model, spec, seed_axis)(keys)
  state = _train_in_chunks(
    chunk_fn, state, (keys, normalized, labels), names, progress, chunk_seconds
  )
  stacked = sharding.gather_across_processes(state.params)
  _check_finite_params(stacked, names)
  return stacked

"""Trains the model pool of a benchmark run from its dataset pool (or the real set).

For each method of the dataset pool at the run's dataset and IPC, all seeds
train as one program, run in chunks of epochs with progress logged about every
25 s (`beard_jax.train.train_seeds`), are scored on the test set in one pass,
and are saved one checkpoint per seed under `<workdir>/models/`. A method whose
checkpoints all exist is not retrained, so a killed run resumes after the last
saved method. The pseudo-method `full` trains the same recipe on the real
training split (the Full-size baseline).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, NamedTuple

import jax
import numpy as np
from absl import logging

import attacks as attack_library
from beard_jax import protocols, provenance, sharding
from beard_jax.benchmark.distill_pool import load_real_split
from beard_jax.benchmark.plan import FULL_SIZE, split_list
from beard_jax.benchmark.progress import TrainingProgress
from beard_jax.data.dataset_pool import load_distilled_set
from beard_jax.data.specs import DatasetSpec
from beard_jax.errors import StaleInputError
from beard_jax.models import checkpoints
from beard_jax.models.convnet import ConvNet, make_apply_fn, normalize
from beard_jax.models.pool import ModelEntry
from beard_jax.train.evaluation import evaluate_seeds
from beard_jax.train.loop import train_seeds
from beard_jax.train.recipes import TrainRecipe, get_recipe
from beard_jax.train.trainer import Attack


def _recipe(config):
  recipe = get_recipe(config.recipe)
  if config.epochs:
    recipe = recipe._replace(epochs=config.epochs)
  return recipe


def _adversarial_attack(config):
  """The PGD of the run's protocol for adversarial training, or None (PROTOCOL.md §4)."""
  if not config.train_attack:
    return None, 'standard'
  protocol = protocols.get_protocol(config.protocol)
  if config.train_attack not in protocol.attack_hparams:
    raise ValueError(
      f'unknown --train_attack {config.train_attack!r}; the {protocol.name} '
      f'protocol defines {sorted(protocol.attack_hparams)}'
    )
  hparams = protocol.attack_hparams[config.train_attack]
  return attack_library.get_attack(config.train_attack, **hparams), 'adversarial'


class TrainingSet(NamedTuple):
  """One method's training set."""

  images: np.ndarray  # [N, H, W, C] float32 at pixel scale
  labels: np.ndarray  # int [N] or float32 soft labels [N, K]
  source: str  # where it came from, for the checkpoints' sidecars
  ipc: int  # images per class as stored
  sha256: str  # content hash of images and labels: models are bound to it


def training_sets(config, spec: DatasetSpec, set_paths: dict) -> dict[str, TrainingSet]:
  """{method: its training set} for the run's methods (this task's share in sweep mode).

  Args:
    config: the run config.
    spec: the dataset.
    set_paths: {method: path} of the distilled sets (`distill_pool.distilled_sets`).
  """
  wanted = {m.upper() for m in split_list(config.methods)}
  sets = {}
  for method, path in set_paths.items():
    if wanted and method.upper() not in wanted and not config.distilled_set:
      continue
    distilled = load_distilled_set(path, spec.name, method=method, experiment=config.experiment)
    digest = provenance.arrays_sha256(distilled.images, distilled.labels)
    sets[method] = TrainingSet(
      distilled.images, distilled.labels, str(distilled.source), distilled.ipc, digest
    )
  if FULL_SIZE.upper() in wanted:
    real = load_real_split(config, spec, 'train')
    labels = np.asarray(real.labels)
    sets[FULL_SIZE] = TrainingSet(
      real.images.astype(np.float32) / 255.0,
      labels,
      'real train split',
      int(np.bincount(labels).min()),
      provenance.arrays_sha256(real.images, labels),
    )
  # Sweep mode: task i owns every num_tasks-th method (in sorted order).
  owned = sorted(sets)[config.task_index :: config.num_tasks]
  return {method: sets[method] for method in owned}


def _check_trained_on(stems: list[str], method: str, sha256: str) -> None:
  """Refuses checkpoints trained on another version of `method`'s set (stale models)."""
  for stem in stems:
    with open(stem + checkpoints.SIDECAR_SUFFIX, encoding='utf-8') as f:
      recorded = json.load(f).get('source_sha256')
    if recorded != sha256:
      raise StaleInputError(
        f'{stem}: trained on another {method} set (sha256 {recorded}, now {sha256}); its '
        'records would not describe this set: give a new --workdir'
      )


class _PoolRun(NamedTuple):
  """What every method of a run's model pool is trained and saved with."""

  config: Any  # the run config (`configs/default.py` fields)
  spec: DatasetSpec
  recipe: TrainRecipe
  model: ConvNet
  seeds: list[int]
  attack: Attack | None  # adversarial training's attack, or None
  training: str  # `standard` or `adversarial`
  protocol: protocols.Protocol


def _train_and_score(run: _PoolRun, method: str, images, labels, test_images, test_labels):
  """Trains `method`'s seeds, logging progress, and scores them on the test set.

  Args:
    run: the run's shared settings.
    method: the method's name, for logs and errors.
    images, labels: its training set, as `train_seeds` takes it.
    test_images: uint8 [M, H, W, C] test images; test_labels: int [M].

  Returns:
    (stacked params, leaves [S, ...]; [S] float64 clean accuracies in %; train seconds).

  Raises:
    FloatingPointError: a seed's loss or parameters became NaN/inf (method, seed, epoch named).
  """
  logging.info(
    'training %s (%d images) × %d seeds, %s recipe, %d epochs',
    method,
    len(images),
    len(run.seeds),
    run.config.recipe,
    run.recipe.epochs,
  )
  label = f'training {method} seeds {run.seeds[0]}-{run.seeds[-1]}'
  start = time.perf_counter()
  mesh = None
  if jax.device_count() > 1 and len(run.seeds) % jax.device_count() == 0:
    mesh = sharding.make_mesh(sharding.SEED_AXIS)
  try:
    stacked = train_seeds(
      run.seeds,
      images,
      labels,
      run.recipe,
      run.model,
      run.spec,
      run.attack,
      attack_input_space=run.protocol.input_space,
      mesh=mesh,
      progress=TrainingProgress(label) if sharding.is_primary_process() else None,
    )
  except FloatingPointError as error:
    raise FloatingPointError(f'{method}: {error}') from error
  stacked = jax.block_until_ready(stacked)
  seconds = time.perf_counter() - start
  pixels = test_images.astype(np.float32) / 255.0
  correct = evaluate_seeds(
    make_apply_fn(run.model, run.spec, 'normalized'),
    stacked,
    np.asarray(normalize(run.spec, pixels)),
    test_labels,
  )
  return stacked, 100.0 * correct / len(test_labels), seconds


def _save_checkpoints(run: _PoolRun, stems, stacked, sidecar: dict, accuracies, seconds):
  """Seed i's parameters to `stems[i]`, with `sidecar` plus its seed and accuracy."""
  for index, (seed, stem) in enumerate(zip(run.seeds, stems, strict=True)):
    checkpoints.save_checkpoint(
      stem,
      jax.tree.map(lambda leaf, i=index: leaf[i], stacked),
      {
        **sidecar,
        'seed': seed,
        'training': run.training,
        'train_attack': run.config.train_attack or None,
        'protocol': run.protocol.name,
        'recipe': run.recipe._asdict(),
        'clean_acc': float(accuracies[index]),
        'train_seconds_all_seeds': seconds,
        'versions': provenance.library_versions(),
      },
    )


def train_model_pool(
  config,
  spec: DatasetSpec,
  test_images: np.ndarray,
  test_labels: np.ndarray,
  sets: dict[str, TrainingSet],
) -> list[ModelEntry]:
  """Trains (or finds already trained) every model of the run; returns their entries.

  Args:
    config: the run config (`configs/default.py` fields).
    spec: the dataset.
    test_images: uint8 [M, H, W, C] test images, to record each model's clean accuracy.
    test_labels: int [M].
    sets: {method: its training set} (`training_sets`, loaded and checked before the
      workdir is touched).

  Raises:
    FloatingPointError: a seed's training loss or parameters became NaN/inf.
    StaleInputError: the workdir's models were trained on another version of a set.
  """
  attack, training = _adversarial_attack(config)
  run = _PoolRun(
    config,
    spec,
    _recipe(config),
    ConvNet(spec.num_classes),
    list(range(config.seed, config.seed + config.seeds)),
    attack,
    training,
    protocols.get_protocol(config.protocol),
  )
  model_dir = os.path.join(config.workdir, 'models')
  entries = []
  for method, (images, labels, source, ipc, sha256) in sorted(sets.items()):
    stems = [
      os.path.join(model_dir, f'{method}_{spec.name}_ipc{ipc}_{training}_seed{s}')
      for s in run.seeds
    ]
    if all(os.path.exists(s + checkpoints.SIDECAR_SUFFIX) for s in stems):
      _check_trained_on(stems, method, sha256)
    else:
      stacked, accuracies, seconds = _train_and_score(
        run, method, images, labels, test_images, test_labels
      )
      logging.info(
        '%s: clean accuracy %.2f ± %.2f%% over %d seeds (%.1fs)',
        method,
        accuracies.mean(),
        accuracies.std(),
        len(run.seeds),
        seconds,
      )
      if sharding.is_primary_process():  # the others wait at the barrier
        sidecar = {
          'method': method,
          'dataset': spec.name,
          'ipc': ipc,
          'source': source,
          'source_sha256': sha256,
          'num_test_examples': len(test_labels),
        }
        _save_checkpoints(run, stems, stacked, sidecar, accuracies, seconds)
      sharding.barrier(f'checkpoints of {method} saved')
    entries += [
      ModelEntry(method, spec.name, ipc, seed, training, stem, 'checkpoint')
      for seed, stem in zip(run.seeds, stems, strict=True)
    ]
  return entries

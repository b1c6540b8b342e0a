"""Trains the model pool of a benchmark run from its dataset pool (or the real set).

For each method of the dataset pool at the run's dataset and IPC, all seeds
train as one vmapped program (`beard_jax.train.train_seeds`), are scored on the
test set in one pass, and are saved one checkpoint per seed under
`<workdir>/models/`. A method whose checkpoints all exist is not retrained, so
a killed run resumes after the last saved method. The pseudo-method `full`
trains the same recipe on the real training split (the Full-size baseline).
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np
from absl import logging

import attacks as attack_library
from beard_jax import protocols, provenance, sharding
from beard_jax.data.dataset_pool import find_dataset_pool, load_distilled_set
from beard_jax.data.real import load_real_dataset
from beard_jax.data.specs import DatasetSpec
from beard_jax.models import checkpoints
from beard_jax.models.convnet import ConvNet, make_apply_fn, normalize
from beard_jax.models.pool import ModelEntry
from beard_jax.train.evaluation import evaluate_seeds
from beard_jax.train.recipes import get_recipe
from beard_jax.train.trainer import train_seeds

FULL_SIZE = 'full'


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


def _training_sets(config, spec: DatasetSpec) -> dict[str, tuple]:
  """{method: (images pixel-scale [N,H,W,C], labels, source)} for the run's methods."""
  wanted = {m.strip().upper() for m in config.methods.split(',') if m.strip()}
  sets = {}
  if config.dataset_pool:
    for method, path in find_dataset_pool(config.dataset_pool, spec.name, config.ipc).items():
      if wanted and method.upper() not in wanted:
        continue
      distilled = load_distilled_set(path, spec.name, method=method, experiment=config.experiment)
      sets[method] = (distilled.images, distilled.labels, str(distilled.source))
  if FULL_SIZE.upper() in wanted:
    real = load_real_dataset(spec.name, 'train', data_dir=config.data_dir or None)
    sets[FULL_SIZE] = (real.images.astype(np.float32) / 255.0, real.labels, 'real train split')
  # Sweep mode: task i owns every num_tasks-th method (in sorted order).
  owned = sorted(sets)[config.task_index :: config.num_tasks]
  return {method: sets[method] for method in owned}


def train_model_pool(
  config, spec: DatasetSpec, test_images: np.ndarray, test_labels: np.ndarray
) -> list[ModelEntry]:
  """Trains (or finds already trained) every model of the run; returns their entries.

  Args:
    config: the run config (`configs/default.py` fields).
    spec: the dataset.
    test_images: uint8 [M, H, W, C] test images, to record each model's clean accuracy.
    test_labels: int [M].
  """
  recipe = _recipe(config)
  attack, training = _adversarial_attack(config)
  protocol = protocols.get_protocol(config.protocol)
  model = ConvNet(spec.num_classes)
  seeds = list(range(config.seed, config.seed + config.seeds))
  model_dir = os.path.join(config.workdir, 'models')
  entries = []
  for method, (images, labels, source) in sorted(_training_sets(config, spec).items()):
    ipc = (
      config.ipc
      if method != FULL_SIZE
      else int(np.bincount(labels if labels.ndim == 1 else labels.argmax(-1)).min())
    )
    stems = [
      os.path.join(model_dir, f'{method}_{spec.name}_ipc{ipc}_{training}_seed{s}') for s in seeds
    ]
    if not all(os.path.exists(s + checkpoints.SIDECAR_SUFFIX) for s in stems):
      logging.info(
        'training %s (%d images) × %d seeds, %s recipe, %d epochs',
        method,
        len(images),
        len(seeds),
        config.recipe,
        recipe.epochs,
      )
      start = time.perf_counter()
      mesh = None
      if jax.device_count() > 1 and len(seeds) % jax.device_count() == 0:
        mesh = sharding.make_mesh(sharding.SEED_AXIS)
      stacked = train_seeds(
        seeds,
        images,
        labels,
        recipe,
        model,
        spec,
        attack,
        attack_input_space=protocol.input_space,
        mesh=mesh,
      )
      stacked = jax.block_until_ready(stacked)
      seconds = time.perf_counter() - start
      pixels = test_images.astype(np.float32) / 255.0
      correct = evaluate_seeds(
        make_apply_fn(model, spec, 'normalized'),
        stacked,
        np.asarray(normalize(spec, pixels)),
        test_labels,
      )
      accuracies = 100.0 * correct / len(test_labels)
      logging.info(
        '%s: clean accuracy %.2f ± %.2f%% over %d seeds (%.1fs)',
        method,
        accuracies.mean(),
        accuracies.std(),
        len(seeds),
        seconds,
      )
      if sharding.is_primary_process():  # the others wait at the barrier
        for index, (seed, stem) in enumerate(zip(seeds, stems, strict=False)):
          checkpoints.save_checkpoint(
            stem,
            jax.tree.map(lambda leaf, i=index: leaf[i], stacked),
            {
              'method': method,
              'dataset': spec.name,
              'ipc': ipc,
              'seed': seed,
              'training': training,
              'train_attack': config.train_attack or None,
              'protocol': protocol.name,
              'recipe': recipe._asdict(),
              'source': source,
              'clean_acc': float(accuracies[index]),
              'train_seconds_all_seeds': seconds,
              'num_test_examples': len(test_labels),
              'versions': provenance.library_versions(),
            },
          )
      sharding.barrier(f'checkpoints of {method} saved')
    entries += [
      ModelEntry(method, spec.name, ipc, seed, training, stem, 'checkpoint')
      for seed, stem in zip(seeds, stems, strict=False)
    ]
  return entries

"""`run_benchmark(config)`: the one entry point behind `launch.py`.

For each model of the pool (trained from the dataset pool, or loaded from a
model-pool directory) and each mode, it runs the clean pass and every attack
as one cell, appends the cell's record the moment it finishes, then computes
metrics and writes leaderboards and a report from all records of the workdir.
Finished cells are skipped on rerun, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import zlib
from typing import Any

import jax
import numpy as np
from absl import logging

import attacks as attack_library
from beard_jax import protocols, provenance
from beard_jax.benchmark.progress import CellProgress
from beard_jax.benchmark.report import write_outputs
from beard_jax.benchmark.train_pool import train_model_pool
from beard_jax.data.real import load_real_dataset
from beard_jax.data.specs import DatasetSpec, canonical_dataset_name, get_dataset_spec
from beard_jax.evaluate.results import ResultStore, cell_key
from beard_jax.evaluate.runner import AttackRun, identity_attack, run_attack
from beard_jax.models.convnet import ConvNet, make_apply_fn, normalize
from beard_jax.models.pool import ModelEntry, discover_models, load_model_params

# Config fields that change a cell's numbers; the workdir is bound to them.
RESULT_FIELDS = (
  'dataset', 'ipc', 'protocol', 'num_examples', 'batch_size', 'seed', 'seeds', 'recipe',
  'epochs', 'train_attack', 'experiment',
)
MODES = ('untargeted', 'targeted')


def _split_list(text: str) -> list[str]:
  return [item.strip() for item in text.split(',') if item.strip()]


def result_config(config) -> dict[str, Any]:
  """The part of `config` that determines results (hashed into every record)."""
  values = {field: config[field] for field in RESULT_FIELDS}
  values['dataset'] = canonical_dataset_name(values['dataset'])
  return values


def _cell_key_for_attack(base_seed: int, *parts) -> jax.Array:
  """A PRNG key that depends only on the seed and the cell, not on run order."""
  name = '/'.join(str(p) for p in parts)
  return jax.random.fold_in(jax.random.key(base_seed), zlib.crc32(name.encode()))


def _attack_inputs(protocol: protocols.Protocol, spec: DatasetSpec, images: np.ndarray):
  """Test images in the protocol's attack space: [0, 1] pixels or normalised tensors."""
  pixels = images.astype(np.float32) / 255.0
  if protocol.input_space == 'pixels':
    return pixels
  return np.asarray(normalize(spec, pixels))


def _record(entry: ModelEntry, protocol, attack: str, targeted: bool, run: AttackRun,
            hparams: dict, versions: dict) -> dict[str, Any]:
  return {
    'method': entry.method,
    'dataset': entry.dataset,
    'ipc': entry.ipc,
    'seed': entry.seed,
    'protocol': protocol.name,
    'training': entry.training,
    'attack': attack,
    'targeted': targeted,
    'clean_acc': run.clean_accuracy,
    'robust_acc': run.robust_accuracy,
    'asr': run.attack_success_rate,
    'ast': run.seconds_per_success,
    'attack_seconds': run.total_seconds,
    'compile_seconds': run.compile_seconds,
    'num_examples': run.num_examples,
    'mean_linf': float(run.linf.mean()),
    'mean_l2': float(run.l2.mean()),
    'hparams': hparams,
    'model_path': entry.path,
    'versions': versions,
  }


def evaluate_model(entry: ModelEntry, params, config, store: ResultStore, images: np.ndarray,
                   labels: np.ndarray, spec: DatasetSpec, versions: dict) -> None:
  """Runs every unfinished (mode, attack) cell of one model and records each."""
  protocol = protocols.get_protocol(config.protocol)
  model = ConvNet(spec.num_classes)
  apply_fn = make_apply_fn(model, spec, protocol.input_space)
  inputs = _attack_inputs(protocol, spec, images)
  targets = np.asarray(protocols.target_labels(protocol, labels, spec.num_classes))
  for mode in _split_list(config.modes):
    if mode not in MODES:
      raise ValueError(f'unknown mode {mode!r}; choose from {MODES}')
    targeted = mode == 'targeted'
    for attack_name in ['clean', *_split_list(config.attacks)]:
      if attack_name == 'clean' and attack_name in _split_list(config.attacks):
        continue
      if targeted and attack_name in protocol.untargeted_only:
        logging.info('%s: %s is untargeted only under the %s protocol; skipped', entry.method,
                     attack_name, protocol.name)
        continue
      key_fields = dict(method=entry.method, dataset=entry.dataset, ipc=entry.ipc,
                        seed=entry.seed, protocol=protocol.name, training=entry.training,
                        attack=attack_name, targeted=targeted)
      if store.is_done(cell_key(key_fields)):
        continue
      if attack_name == 'clean':
        attack_fn, hparams = identity_attack, {}
      else:
        if attack_name not in protocol.attack_hparams:
          raise ValueError(f'the {protocol.name} protocol has no settings for {attack_name!r}; '
                           f'it defines {sorted(protocol.attack_hparams)}')
        hparams = dict(protocol.attack_hparams[attack_name], targeted=targeted)
        attack_fn = attack_library.get_attack(attack_name, **hparams)
      label = f'{entry.method} ipc{entry.ipc} seed{entry.seed} {attack_name} {mode}'
      run = run_attack(
        attack_fn, apply_fn, params, inputs, labels,
        key=_cell_key_for_attack(config.seed, *cell_key(key_fields)),
        batch_size=config.batch_size,
        targets=targets if targeted else None,
        on_batch=CellProgress(label, config.batch_size),
      )
      store.add(_record(entry, protocol, attack_name, targeted, run, hparams, versions))
      logging.info('%s: clean %.2f%%, robust %.2f%%, %.1fs', label, run.clean_accuracy,
                   run.robust_accuracy, run.total_seconds)


def _select_methods(entries: list[ModelEntry], config) -> list[ModelEntry]:
  methods = _split_list(config.methods)
  if methods:
    wanted = {m.lower() for m in methods}
    entries = [e for e in entries if e.method.lower() in wanted]
  if config.ipc:
    entries = [e for e in entries if e.ipc == config.ipc]
  return entries


def run_benchmark(config) -> list[dict[str, Any]]:
  """Runs (or resumes) the benchmark described by `config`; returns all records.

  Args:
    config: an `ml_collections.ConfigDict` as in `configs/default.py`.
  """
  spec = get_dataset_spec(config.dataset)
  resolved = result_config(config)
  store = ResultStore(config.workdir, config.to_dict(), provenance.config_hash(resolved))
  versions = provenance.library_versions()

  test_set = load_real_dataset(spec.name, 'test', data_dir=config.data_dir or None)
  images, labels = test_set.images, np.asarray(test_set.labels, np.int32)
  if config.num_examples:
    images, labels = images[: config.num_examples], labels[: config.num_examples]

  entries = _model_entries(config, spec, images, labels)
  if not entries:
    raise FileNotFoundError(
      f'no models for dataset {spec.name} IPC {config.ipc} methods {config.methods or "all"}: '
      'give --model_pool with trained models or --dataset_pool with distilled sets'
    )
  model = ConvNet(spec.num_classes)
  for entry in entries:
    params = load_model_params(entry, model, spec.image_size)
    evaluate_model(entry, params, config, store, images, labels, spec, versions)
  outputs = write_outputs(config, store.records)
  logging.info('report: %s', outputs['report'])
  return store.records


def _model_entries(config, spec: DatasetSpec, images, labels) -> list[ModelEntry]:
  """Models to evaluate: a model pool as given, or one trained from the dataset pool."""
  if config.model_pool:
    return _select_methods(discover_models(config.model_pool, spec.name), config)
  if config.dataset_pool or 'full' in _split_list(config.methods.lower()):
    return train_model_pool(config, spec, images, labels)
  return []


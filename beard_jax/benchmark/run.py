"""`run_benchmark(config)`: the one entry point behind `launch.py`.

The run is planned as a list of cells, one per (model, mode, attack), in a
fixed order. Each cell runs the attack over the test set and appends its
record the moment it finishes; finished cells are skipped on rerun, so a
killed run resumes where it stopped. Then metrics, leaderboards and a report
are written from all records of the workdir.

Sweep mode (`num_tasks > 1`) splits the planned cells over independent
processes (batch-job array tasks): task i takes cells i, i + n, i + 2n, … and
writes `results.task-<i>-of-<n>.jsonl`; with a dataset pool, task i trains only
the methods it owns (every n-th method) and runs all their cells. `merge=True`
then gathers every task's records into `results.jsonl` and writes the reports.
"""

from __future__ import annotations

import glob
import json
import os
import zlib
from typing import Any, NamedTuple

import jax
import numpy as np
from absl import logging

import attacks as attack_library
from attacks import deepfool
from beard_jax import protocols, provenance, sharding
from beard_jax.benchmark.progress import CellProgress
from beard_jax.benchmark.report import write_outputs
from beard_jax.benchmark.train_pool import train_model_pool
from beard_jax.data.real import load_real_dataset
from beard_jax.data.specs import DatasetSpec, canonical_dataset_name, get_dataset_spec
from beard_jax.evaluate.results import RESULTS_FILE, ResultStore, cell_key
from beard_jax.evaluate.runner import AttackRun, identity_attack, run_attack
from beard_jax.models.convnet import ConvNet, make_apply_fn, normalize
from beard_jax.models.pool import ModelEntry, discover_models, load_model_params

# JAX's float32 matmul precisions that `config.matmul_precision` accepts.
MATMUL_PRECISIONS = ('default', 'high', 'highest')
# Config fields that change a cell's numbers; the workdir is bound to them.
RESULT_FIELDS = (
  'dataset',
  'ipc',
  'protocol',
  'num_examples',
  'batch_size',
  'matmul_precision',
  'seed',
  'seeds',
  'recipe',
  'epochs',
  'train_attack',
  'experiment',
)
MODES = ('untargeted', 'targeted')


class Cell(NamedTuple):
  """One unit of work and of resumption: an attack in one mode on one model."""

  entry: ModelEntry
  attack: str
  targeted: bool

  def key(self, protocol: str) -> tuple:
    e = self.entry
    return cell_key(
      dict(
        method=e.method,
        dataset=e.dataset,
        ipc=e.ipc,
        seed=e.seed,
        protocol=protocol,
        training=e.training,
        attack=self.attack,
        targeted=self.targeted,
      )
    )


def _split_list(text: str) -> list[str]:
  return [item.strip() for item in text.split(',') if item.strip()]


def result_config(config) -> dict[str, Any]:
  """The part of `config` that determines results (hashed into every record)."""
  values = {field: config[field] for field in RESULT_FIELDS}
  values['dataset'] = canonical_dataset_name(values['dataset'])
  return values


def plan_cells(entries: list[ModelEntry], config, protocol: protocols.Protocol) -> list[Cell]:
  """Every cell of the run, in a fixed order: models, then modes, then clean and attacks."""
  modes = _split_list(config.modes)
  for mode in modes:
    if mode not in MODES:
      raise ValueError(f'unknown mode {mode!r}; choose from {MODES}')
  attack_names = [a for a in _split_list(config.attacks) if a != 'clean']
  for name in attack_names:
    if name not in protocol.attack_hparams:
      raise ValueError(
        f'the {protocol.name} protocol has no settings for attack {name!r}; '
        f'choose from {sorted(protocol.attack_hparams)}'
      )
  cells = []
  for entry in entries:
    for mode in modes:
      targeted = mode == 'targeted'
      for name in ['clean', *attack_names]:
        if targeted and name in protocol.untargeted_only:
          continue  # BEARD records clean accuracy there; its metrics drop the row.
        cells.append(Cell(entry, name, targeted))
  return cells


def _attack_key(base_seed: int, cell_id: tuple) -> jax.Array:
  """A PRNG key that depends only on the seed and the cell, not on run order."""
  name = '/'.join(str(p) for p in cell_id)
  return jax.random.fold_in(jax.random.key(base_seed), zlib.crc32(name.encode()))


def _attack_inputs(protocol: protocols.Protocol, spec: DatasetSpec, images: np.ndarray):
  """Test images in the protocol's attack space: [0, 1] pixels or normalised tensors."""
  pixels = images.astype(np.float32) / 255.0
  if protocol.input_space == 'pixels':
    return pixels
  return np.asarray(normalize(spec, pixels))


def resolved_hparams(attack: str, protocol: protocols.Protocol, targeted: bool) -> dict:
  """The protocol's hyperparameters of `attack`, with the backend-dependent defaults filled in.

  DeepFool's samples in flight default to a per-backend value, and its ties under
  the `beard` protocol depend on them (`attacks.deepfool`), so the record names them.
  """
  hparams = dict(protocol.attack_hparams[attack], targeted=targeted)
  if attack == 'deepfool' and hparams.get('slots') is None:
    hparams['slots'] = deepfool.default_slots()
  return hparams


def _record(cell: Cell, protocol, run: AttackRun, hparams: dict, versions: dict) -> dict:
  entry = cell.entry
  return {
    'method': entry.method,
    'dataset': entry.dataset,
    'ipc': entry.ipc,
    'seed': entry.seed,
    'protocol': protocol.name,
    'training': entry.training,
    'attack': cell.attack,
    'targeted': cell.targeted,
    'clean_acc': run.clean_accuracy,
    'robust_acc': run.robust_accuracy,
    'robust_acc_range': list(run.robust_accuracy_range),
    'boundary_examples': int(run.on_boundary.sum()),
    'asr': run.attack_success_rate,
    'ast': run.seconds_per_success,
    'attack_seconds': run.total_seconds,
    'compile_seconds': run.compile_seconds,
    'num_examples': run.num_examples,
    'mean_linf': float(run.linf.mean()),
    'mean_l2': float(run.l2.mean()),
    'perturbation_space': protocol.input_space,
    'hparams': hparams,
    'model_path': entry.path,
    'versions': versions,
  }


def run_cells(
  cells: list[Cell],
  config,
  store: ResultStore,
  images: np.ndarray,
  labels: np.ndarray,
  spec: DatasetSpec,
  mesh=None,
) -> None:
  """Runs every unfinished cell (models loaded once each) and records each as it ends."""
  protocol = protocols.get_protocol(config.protocol)
  model = ConvNet(spec.num_classes)
  apply_fn = make_apply_fn(model, spec, protocol.input_space)
  inputs = _attack_inputs(protocol, spec, images)
  targets = np.asarray(protocols.target_labels(protocol, labels, spec.num_classes))
  versions = provenance.library_versions()
  todo = [c for c in cells if not store.is_done(c.key(protocol.name))]
  logging.info('%d of %d cells to run', len(todo), len(cells))
  params, loaded = None, None
  for cell in todo:
    if cell.entry != loaded:
      params, loaded = load_model_params(cell.entry, model, spec.image_size), cell.entry
    if cell.attack == 'clean':
      attack_fn, hparams = identity_attack, {}
    else:
      hparams = resolved_hparams(cell.attack, protocol, cell.targeted)
      attack_fn = attack_library.get_attack(cell.attack, **hparams)
    mode = 'targeted' if cell.targeted else 'untargeted'
    label = f'{cell.entry.method} ipc{cell.entry.ipc} seed{cell.entry.seed} {cell.attack} {mode}'
    run = run_attack(
      attack_fn,
      apply_fn,
      params,
      inputs,
      labels,
      key=_attack_key(config.seed, cell.key(protocol.name)),
      batch_size=config.batch_size,
      targets=targets if cell.targeted else None,
      on_batch=CellProgress(label, config.batch_size) if sharding.is_primary_process() else None,
      mesh=mesh,
    )
    store.add(_record(cell, protocol, run, hparams, versions))
    logging.info(
      '%s: clean %.2f%%, robust %.2f%%, %.1fs',
      label,
      run.clean_accuracy,
      run.robust_accuracy,
      run.total_seconds,
    )


def _select(entries: list[ModelEntry], config) -> list[ModelEntry]:
  methods = {m.lower() for m in _split_list(config.methods)}
  if methods:
    entries = [e for e in entries if e.method.lower() in methods]
  if config.ipc:
    entries = [e for e in entries if e.ipc == config.ipc]
  return entries


def _task_file(config) -> str:
  if config.num_tasks == 1:
    return RESULTS_FILE
  return f'results.task-{config.task_index}-of-{config.num_tasks}.jsonl'


def _check_sweep(config) -> None:
  if config.num_tasks < 1 or not 0 <= config.task_index < config.num_tasks:
    raise ValueError(
      f'need 0 <= task_index < num_tasks, got task_index={config.task_index}, '
      f'num_tasks={config.num_tasks}'
    )


def merge_task_results(config, store: ResultStore) -> None:
  """Adds every task file's records to `store` (the merged `results.jsonl`), once each."""
  pattern = os.path.join(config.workdir, 'results.task-*-of-*.jsonl')
  for path in sorted(glob.glob(pattern)):
    with open(path, encoding='utf-8') as f:
      for line in f:
        if not line.endswith('\n'):
          continue  # A torn last line of a killed task: that cell was not finished.
        record = json.loads(line)
        if record.get('config_hash') != store.config_hash:
          raise ValueError(f'{path} holds a record of another config: {record.get("config_hash")}')
        if not store.is_done(cell_key(record)):
          store.add({k: v for k, v in record.items() if k != 'config_hash'})


def with_protocol_defaults(config, protocol: protocols.Protocol):
  """A copy of `config` with the protocol's batch size and matmul precision filled in.

  Fields left to the protocol (batch_size 0, matmul_precision '') take its values, so
  `config.json` and the hash bound to every record name what actually ran.
  """
  config = config.copy_and_resolve_references()
  if not config.batch_size:
    config.batch_size = protocol.batch_size
  if not config.matmul_precision:
    config.matmul_precision = protocol.matmul_precision
  return config


def matmul_precision_scope(precision: str):
  """A context in which JAX's default float32 matmul/conv precision is `precision`.

  Args:
    precision: one of `MATMUL_PRECISIONS`; 'default' lets XLA use TF32 on NVIDIA
      GPUs, 'highest' computes in float32 (no effect on a CPU, which always does).
  """
  if precision not in MATMUL_PRECISIONS:
    raise ValueError(f'unknown matmul_precision {precision!r}; choose from {MATMUL_PRECISIONS}')
  return jax.default_matmul_precision(None if precision == 'default' else precision)


def run_benchmark(config) -> list[dict[str, Any]]:
  """Runs (or resumes) the benchmark described by `config`; returns this task's records.

  Args:
    config: an `ml_collections.ConfigDict` as in `configs/default.py`.
  """
  _check_sweep(config)
  protocol = protocols.get_protocol(config.protocol)
  config = with_protocol_defaults(config, protocol)
  with matmul_precision_scope(config.matmul_precision):
    return _run_resolved(config, protocol)


def _run_resolved(config, protocol: protocols.Protocol) -> list[dict[str, Any]]:
  """`run_benchmark` once the protocol's defaults are filled in."""
  spec = get_dataset_spec(config.dataset)
  store_config = (config.workdir, config.to_dict(), provenance.config_hash(result_config(config)))
  primary = sharding.is_primary_process()
  if config.merge:
    store = ResultStore(*store_config)
    merge_task_results(config, store)
    write_outputs(config, store.records)
    return store.records
  # Multi-process: every process reads the workdir before any writes (the first cell is a
  # collective), then only the primary process writes.
  store = ResultStore(*store_config, results_file=_task_file(config), writer=primary)

  test_set = load_real_dataset(spec.name, 'test', data_dir=config.data_dir or None)
  images, labels = test_set.images, np.asarray(test_set.labels, np.int32)
  if config.num_examples:
    images, labels = images[: config.num_examples], labels[: config.num_examples]

  if config.model_pool:
    entries = _select(discover_models(config.model_pool, spec.name), config)
    cells = plan_cells(entries, config, protocol)[config.task_index :: config.num_tasks]
  elif config.dataset_pool or 'full' in _split_list(config.methods.lower()):
    entries = train_model_pool(config, spec, images, labels)
    cells = plan_cells(entries, config, protocol)
  else:
    raise ValueError('give --model_pool (trained models) or --dataset_pool (distilled sets)')
  if not cells:
    raise FileNotFoundError(
      f'no models for dataset {spec.name}, IPC {config.ipc}, methods {config.methods or "all"} '
      f'in {config.model_pool or config.dataset_pool}'
    )
  mesh = sharding.make_mesh(sharding.BATCH_AXIS) if jax.device_count() > 1 else None
  run_cells(cells, config, store, images, labels, spec, mesh)
  if config.num_tasks == 1 and primary:
    outputs = write_outputs(config, store.records)
    logging.info('report: %s', outputs['report'])
  return store.records

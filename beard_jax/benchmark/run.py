"""`run_benchmark(config)`: the one entry point behind `launch.py`.

The config is first resolved into a validated `RunPlan` (`plan.py`); nothing is
read or written before that succeeds. Then the test set is loaded, the workdir
locked (`io.locks`) and bound to the plan's config, the model pool trained or
found, and the run is executed as a list of cells, one per (model, mode,
attack), in a fixed order. Each cell appends its record the moment it finishes;
finished cells are skipped on rerun, so a killed run resumes where it stopped,
and every record names the content hashes of the model and test set it read,
so changed inputs are refused rather than silently reused. Then metrics,
leaderboards and a report are written from all records of the workdir, and a
summary is printed.

Sweep mode (`num_tasks > 1`) splits the planned cells over independent
processes (batch-job array tasks): task i takes cells i, i + n, i + 2n, … and
writes `results.task-<i>-of-<n>.jsonl`; with a dataset pool, task i trains only
the methods it owns (every n-th method) and runs all their cells. `merge=True`
then gathers every task's records into `results.jsonl` and writes the reports.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import zlib
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from absl import logging

import attacks as attack_library
from beard_jax import protocols, provenance, sharding
from beard_jax.benchmark import transfer
from beard_jax.benchmark.distill_pool import distilled_sets, load_real_split
from beard_jax.benchmark.plan import (
  FULL_SIZE,
  MATMUL_PRECISIONS,
  RunPlan,
  plan_cells,
  resolve_plan,
)
from beard_jax.benchmark.progress import CellProgress, RunProgress
from beard_jax.benchmark.report import summary_text, write_outputs
from beard_jax.benchmark.train_pool import train_model_pool, training_sets
from beard_jax.data.download import download
from beard_jax.errors import ConfigError, IncompleteSweepError
from beard_jax.evaluate.results import RESULTS_FILE, ResultStore, cell_key, repair_duplicates
from beard_jax.evaluate.runner import (
  AttackRun,
  compile_attack,
  compile_transfer,
  identity_attack,
  predict_clean,
  run_compiled,
  run_transfer,
  with_params,
)
from beard_jax.io.locks import workdir_lock
from beard_jax.models.convnet import ConvNet, make_apply_fn, normalize
from beard_jax.models.pool import ModelEntry, discover_models, load_model_params

_TASK_FILE = re.compile(r'^results\.task-(\d+)-of-(\d+)\.jsonl$')


def _attack_key(base_seed: int, cell_id: tuple) -> jax.Array:
  """A PRNG key that depends only on the seed and the cell, not on run order.

  Empty trailing fields (an ordinary cell's `sweep` and `transfer_to`) are left out of
  the name, so a white-box cell's key is the one it had before those fields existed.
  """
  while cell_id and cell_id[-1] == '':
    cell_id = cell_id[:-1]
  name = '/'.join(str(p) for p in cell_id)
  return jax.random.fold_in(jax.random.key(base_seed), zlib.crc32(name.encode()))


def _attack_inputs(plan: RunPlan, images: np.ndarray) -> np.ndarray:
  """Test images in the protocol's attack space: [0, 1] pixels or normalised tensors."""
  pixels = images.astype(np.float32) / 255.0
  if plan.protocol.input_space == 'pixels':
    return pixels
  return np.asarray(normalize(plan.spec, pixels))


def _attack_setting(plan: RunPlan, images: np.ndarray, labels: np.ndarray) -> tuple:
  """(model, apply_fn in the protocol's input space, attack inputs, target labels, the test
  set's hash): what every attack pass of the run shares."""
  spec = plan.spec
  model = ConvNet(spec.num_classes)
  apply_fn = make_apply_fn(model, spec, plan.protocol.input_space)
  targets = protocols.target_labels(plan.protocol, labels, spec.num_classes)
  test_hash = provenance.arrays_sha256(images, labels)
  return model, apply_fn, _attack_inputs(plan, images), np.asarray(targets, np.int32), test_hash


def model_sha256(entry: ModelEntry) -> str:
  """The content hash of the file holding a model's parameters."""
  suffix = '.msgpack' if entry.kind == 'checkpoint' else ''
  return provenance.file_sha256(entry.path + suffix)


def _record(cell, plan: RunPlan, run: AttackRun, hparams: dict, inputs: dict, versions) -> dict:
  """The record of a finished cell (`RECORD_FIELDS`); `hparams` empty means nothing was
  crafted (the clean pass, or a transfer pass its protocol leaves clean)."""
  runs_as = plan.runs_as(cell.attack, cell.targeted) if hparams else 'clean'
  entry = cell.entry
  return {
    'method': entry.method,
    'dataset': entry.dataset,
    'ipc': entry.ipc,
    'seed': entry.seed,
    'protocol': plan.protocol.name,
    'training': entry.training,
    'attack': cell.attack,
    'targeted': cell.targeted,
    'sweep': cell.sweep,
    'transfer_to': cell.transfer_to,
    'runs_as': runs_as,
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
    'perturbation_space': plan.protocol.input_space,
    'hparams': hparams,
    'inputs': inputs,
    'model_path': entry.path,
    'versions': versions,
  }


def run_cells(plan: RunPlan, cells, store: ResultStore, images, labels, mesh=None) -> None:
  """Runs every unfinished cell (models loaded once each) and records each as it ends.

  Args:
    plan: the run.
    cells: the planned cells, in order.
    store: the workdir's records; finished cells are skipped after their inputs are checked.
    images: uint8 [N, H, W, C] test images; labels: int32 [N].
    mesh: a 1-D device mesh to shard each attack batch over, or None.
  """
  config, spec = plan.config, plan.spec
  model, apply_fn, inputs, targets, test_hash = _attack_setting(plan, images, labels)
  model_hashes = {entry: model_sha256(entry) for entry in dict.fromkeys(c.entry for c in cells)}
  for cell in cells:
    store.check_inputs(cell.key(plan.protocol.name), _cell_inputs(cell, model_hashes, test_hash))
  todo = [c for c in cells if not store.is_done(c.key(plan.protocol.name))]
  progress = RunProgress(len(cells), len(cells) - len(todo))
  progress.plan(todo)
  versions = provenance.library_versions()
  # Compiled programs by `_attack_maker`'s key: the models of a run share one architecture,
  # so each program compiles once and every later model runs it with its own parameters.
  params, loaded, programs, clean = None, None, {}, None
  batch_size = min(config.batch_size, len(labels))
  for cell in todo:
    if cell.entry != loaded:
      params, loaded = load_model_params(cell.entry, model, spec.image_size), cell.entry
      clean = None
    hparams = plan.cell_hparams(cell)
    make_attack, value, program_key = _attack_maker(plan, cell, hparams)
    compiled = programs.get(program_key)
    reused = compiled is not None
    if reused:
      compiled = with_params(compiled, params)
    else:
      compiled = compile_attack(
        make_attack,
        apply_fn,
        params,
        inputs.shape[1:],
        batch_size=batch_size,
        targeted=cell.targeted,
        mesh=mesh,
        num_examples=len(labels),
      )
      programs[program_key] = compiled
    if clean is None:  # The model's clean predictions: one pass for all its cells.
      clean = predict_clean(compiled, inputs)
    label = progress.start(cell)
    run = run_compiled(
      compiled,
      inputs,
      labels,
      key=_attack_key(config.seed, cell.key(plan.protocol.name)),
      value=value,
      targets=targets if cell.targeted else None,
      on_batch=CellProgress(label, config.batch_size, len(labels))
      if sharding.is_primary_process()
      else None,
      clean_predictions=clean,
    )
    if reused:
      run = run._replace(compile_seconds=0.0)
    cell_inputs = _cell_inputs(cell, model_hashes, test_hash)
    store.add(_record(cell, plan, run, hparams, cell_inputs, versions))
    progress.finish(cell, run.total_seconds + run.compile_seconds, run)


def run_transfer_passes(plan: RunPlan, entries, store: ResultStore, images, labels, mesh=None):
  """`--transfer`: every pending (source, attack, mode) pass, scored on all `entries`.

  Args:
    plan, store, images, labels, mesh: as `run_cells`.
    entries: the pool's models: each is a source, and all of them are the targets.
  """
  config, spec = plan.config, plan.spec
  model, apply_fn, inputs, targets, test_hash = _attack_setting(plan, images, labels)
  hashes = [model_sha256(entry) for entry in entries]
  units = transfer.transfer_units(entries, plan)
  for unit in units:
    source_hash = hashes[entries.index(unit.entry)]
    for cell, target_hash in zip(transfer.target_cells(unit, entries), hashes, strict=True):
      inputs_of = transfer.transfer_inputs(source_hash, target_hash, test_hash)
      store.check_inputs(cell.key(plan.protocol.name), inputs_of)
  todo = transfer.pending_units(units, entries, plan, store)
  if not todo:
    return
  all_params = [load_model_params(entry, model, spec.image_size) for entry in entries]
  stacked = transfer.stack_params(all_params)
  versions = provenance.library_versions()
  programs, clean_predictions = {}, None
  for done, unit in enumerate(todo, start=1):
    clean = transfer.left_clean(plan, unit.attack, unit.targeted)
    hparams = {} if clean else plan.cell_hparams(unit)
    pair = (unit.attack, unit.targeted)
    fresh = pair not in programs
    if fresh:  # One program per attack and mode; the source is an argument.
      runs_as = plan.runs_as(unit.attack, unit.targeted)
      attack_fn = identity_attack if clean else attack_library.get_attack(runs_as, **hparams)
      programs[pair] = compile_transfer(
        lambda value, attack_fn=attack_fn: attack_fn,
        apply_fn,
        all_params[0],
        stacked,
        inputs.shape[1:],
        batch_size=min(config.batch_size, len(labels)),
        targeted=unit.targeted,
        mesh=mesh,
        num_examples=len(labels),
      )
    if clean_predictions is None:  # Every target's clean predictions: one pass for all.
      clean_predictions = predict_clean(programs[pair], inputs)
    source = entries.index(unit.entry)
    runs = run_transfer(
      programs[pair],
      inputs,
      labels,
      key=_attack_key(config.seed, unit.key(plan.protocol.name)),
      source_params=all_params[source],
      clean_predictions=clean_predictions,
      targets=targets if unit.targeted else None,
    )
    cells = transfer.target_cells(unit, entries)
    for cell, run, target_hash in zip(cells, runs, hashes, strict=True):
      if store.is_done(cell.key(plan.protocol.name)):
        continue
      run = run if fresh else run._replace(compile_seconds=0.0)
      cell_inputs = transfer.transfer_inputs(hashes[source], target_hash, test_hash)
      store.add(_record(cell, plan, run, hparams, cell_inputs, versions))
    transfer.log_pass(unit, done, len(todo), runs, entries)


def _attack_maker(plan: RunPlan, cell, hparams: dict) -> tuple[Callable, float, tuple]:
  """(make_attack(value), value, program key) of a cell: cells with equal keys run the same
  compiled program (on any model of the run).

  A sweep point of a hyperparameter the attack takes traced passes the point as the
  program's value, so every point of the (attack, mode) shares one program; any other
  cell bakes its hyperparameters in (they are part of its key) and ignores the value.
  """
  if cell.attack == 'clean':
    return (lambda value: identity_attack), 0.0, ('clean', cell.targeted)
  runs_as = plan.runs_as(cell.attack, cell.targeted)
  sweep = plan.sweeps.get((cell.attack, cell.targeted)) if cell.sweep else None
  if sweep is None or sweep.name not in attack_library.get_spec(runs_as).traced:
    attack_fn = attack_library.get_attack(runs_as, **hparams)
    key = ('fixed', runs_as, cell.targeted, repr(sorted(hparams.items())))
    return (lambda value: attack_fn), 0.0, key
  fixed = plan.hparams[(cell.attack, cell.targeted)]
  make_attack = attack_library.traced_attack_maker(runs_as, fixed, sweep.name)
  return make_attack, float(hparams[sweep.name]), ('sweep', cell.attack, cell.targeted)


def _cell_inputs(cell, model_hashes: dict, test_hash: str) -> dict[str, str]:
  return {'model_sha256': model_hashes[cell.entry], 'test_set_sha256': test_hash}


def _select(entries: list[ModelEntry], plan: RunPlan) -> list[ModelEntry]:
  if plan.methods:
    entries = [e for e in entries if e.method.upper() in plan.methods]
  if plan.config.ipc:
    entries = [e for e in entries if e.ipc == plan.config.ipc]
  return entries


def task_files(workdir: str) -> dict[int, tuple[int, str]]:
  """{task index: (number of tasks, path)} of the sweep task files in `workdir` (literal names)."""
  found = {}
  for name in sorted(os.listdir(workdir)) if os.path.isdir(workdir) else []:
    match = _TASK_FILE.match(name)
    if match:
      found[int(match.group(1))] = (int(match.group(2)), os.path.join(workdir, name))
  return found


def merge_task_results(plan: RunPlan, store: ResultStore) -> None:
  """Adds every task file's records to `store` (the merged `results.jsonl`), once each.

  Raises:
    IncompleteSweepError: a task of the sweep left no file (unless `merge_partial`).
    ConfigError: a task file of another sweep size, or of another config.
  """
  config = plan.config
  found = task_files(config.workdir)
  others = sorted(path for n, path in found.values() if n != config.num_tasks)
  if others:
    raise ConfigError(f'{others[0]} belongs to a sweep of another size than {config.num_tasks}')
  missing = [i for i in range(config.num_tasks) if i not in found]
  if missing and not (config.merge_partial and len(missing) < config.num_tasks):
    raise IncompleteSweepError(
      f'{config.workdir}: no records of task(s) {missing} of {config.num_tasks}; run them '
      '(each resumes), or give --merge_partial to merge the tasks that ran'
      + ('' if len(missing) < config.num_tasks else ' (there are none)')
    )
  for index in sorted(found):
    path = found[index][1]
    with open(path, encoding='utf-8') as f:
      for number, line in enumerate(f, start=1):
        if not line.endswith('\n') or not line.strip():
          continue  # A torn last line of a killed task: that cell was not finished.
        record = json.loads(line)
        if record.get('config_hash') != store.config_hash:
          raise ConfigError(
            f'{path}:{number} holds a record of another config: {record.get("config_hash")}'
          )
        if not store.is_done(cell_key(record)):
          store.add({k: v for k, v in record.items() if k != 'config_hash'})


def matmul_precision_scope(precision: str):
  """A context in which JAX's default float32 matmul/conv precision is `precision`.

  Args:
    precision: 'default' lets XLA use TF32 on NVIDIA GPUs, 'high' or 'highest'
      (float32; no effect on a CPU, which always computes in float32).
  """
  if precision not in MATMUL_PRECISIONS:
    raise ConfigError(f'unknown matmul_precision {precision!r}; choose from {MATMUL_PRECISIONS}')
  return jax.default_matmul_precision(None if precision == 'default' else precision)


def run_benchmark(config) -> list[dict[str, Any]]:
  """Runs (or resumes) the benchmark described by `config`; returns this task's records.

  Args:
    config: an `ml_collections.ConfigDict` as in `configs/default.py`.

  Raises:
    beard_jax.errors.UserError: a flag, input file or workdir that cannot run (one line).
  """
  plan = resolve_plan(config)
  with matmul_precision_scope(plan.config.matmul_precision):
    return _run_plan(plan)


def _open_store(plan: RunPlan, primary: bool) -> ResultStore:
  config = plan.config
  args = (config.workdir, config.to_dict(), provenance.config_hash(plan.result_config()))
  if config.repair and primary:
    moved = repair_duplicates(os.path.join(config.workdir, plan.results_file))
    if moved:
      logging.warning('moved duplicate records to %s', moved)
  return ResultStore(*args, results_file=plan.results_file, writer=primary)


def _run_plan(plan: RunPlan) -> list[dict[str, Any]]:
  """`run_benchmark` once the plan is resolved."""
  config, spec = plan.config, plan.spec
  primary = sharding.is_primary_process()
  if config.merge:
    with workdir_lock(config.workdir, RESULTS_FILE):
      store = _open_store(plan, primary)
      merge_task_results(plan, store)
      _finish(plan, store.records)
      return store.records
  if config.download:
    if primary:
      download(spec.name, config.data_dir)
    sharding.barrier('dataset downloaded')
  test_set = load_real_split(config, spec, 'test')
  images, labels = test_set.images, np.asarray(test_set.labels, np.int32)
  if config.num_examples:
    images, labels = images[: config.num_examples], labels[: config.num_examples]
  if config.model_pool:
    entries = _select(discover_models(config.model_pool, spec.name), plan)
    if not entries:
      raise ConfigError(_no_models_message(plan))
  else:
    set_paths = distilled_sets(plan)
    if not set_paths and FULL_SIZE.upper() not in plan.methods:
      raise ConfigError(_no_models_message(plan))
    sets = training_sets(config, spec, set_paths)  # Bad set files stop here, before config.json.
  # Multi-process: every process reads the workdir before any writes (the first cell is a
  # collective), then only the primary process writes and holds the lock.
  lock = workdir_lock(config.workdir, plan.results_file) if primary else contextlib.nullcontext()
  with lock:
    store = _open_store(plan, primary)
    if config.model_pool:
      cells = plan_cells(entries, plan)[config.task_index :: config.num_tasks]
    else:
      entries = train_model_pool(config, spec, images, labels, sets)
      cells = plan_cells(entries, plan)
    if not cells:
      raise ConfigError(_no_models_message(plan))
    mesh = sharding.make_mesh(sharding.BATCH_AXIS) if jax.device_count() > 1 else None
    run_cells(plan, cells, store, images, labels, mesh)
    if config.transfer:
      run_transfer_passes(plan, entries, store, images, labels, mesh)
    if config.num_tasks == 1 and primary:
      _finish(plan, store.records)
  return store.records


def _no_models_message(plan: RunPlan) -> str:
  config = plan.config
  if config.model_pool:
    where = f'the model pool {config.model_pool}'
  else:
    where = ' or '.join(p for p in (config.dataset_pool, config.distill_dir) if p)
    where = f'the dataset pools {where} (and --distill builds none)'
  return (
    f'no models for dataset {plan.spec.name}, IPC {config.ipc or "any"}, methods '
    f'{",".join(plan.methods) or "all"} in {where}; see the README, Data, for the file '
    'names they read'
  )


def _finish(plan: RunPlan, records: list[dict[str, Any]]) -> None:
  """Writes metrics, leaderboards and the report, and prints the summary."""
  config = plan.config
  outputs = write_outputs(config, records)
  summary = summary_text(
    records, metrics_type=config.metrics_type, alpha=config.alpha, clean_time=config.clean_time
  )
  sys.stdout.write(f'{summary}\nreport: {outputs["report"]}\n')
  sys.stdout.flush()

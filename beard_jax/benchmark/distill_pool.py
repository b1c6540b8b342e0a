"""The distilled sets a run trains on: those found in the pools, and those `--distill` builds.

`--distilled_set` benchmarks one file alone (your own set). Otherwise
`--dataset_pool` names sets made elsewhere (read only: it may be a shared folder);
`--distill_dir` is this project's cache of sets it built itself. A method of
`--distill` that neither pool holds for the run's dataset and IPC is built from the
real training split (`beard_jax.distill.build_distilled_set`, seeded by `--seed`,
`--distill_iterations` updates or the method's official budget, `--distill_batch_real`
real images per class and step or the official number, `--distill_hparams` overrides)
into the cache, then
trained on like any other set. A set in `--dataset_pool` wins over the cache's.
Building is resumable: a killed run continues the distillation where its last
checkpoint left it.
"""

from __future__ import annotations

import os
import pathlib

from absl import logging

from beard_jax import sharding
from beard_jax.benchmark.plan import DATA_DIR_ENV, RunPlan, split_list
from beard_jax.data.dataset_pool import find_dataset_pool, infer_method
from beard_jax.data.real import ImageSet, load_real_dataset
from beard_jax.data.specs import DatasetSpec
from beard_jax.distill import (
  build_distilled_set,
  get_method,
  method_config,
  parse_overrides,
  typed_overrides,
)
from beard_jax.errors import DataMissingError


def load_real_split(config, spec: DatasetSpec, split: str) -> ImageSet:
  """`split` of the run's real dataset; missing data names `--data_dir`, its default and
  `--download` in its one-line error (`DataMissingError`)."""
  try:
    return load_real_dataset(spec.name, split, data_dir=config.data_dir or None)
  except FileNotFoundError as error:
    raise DataMissingError(
      f'{error}; or point --data_dir (default ${DATA_DIR_ENV}) at a folder that has it, or add '
      '--download to fetch the official archive into --data_dir'
    ) from error


def single_set_method(plan: RunPlan) -> str:
  """The method name of `--distilled_set`: the one `--methods` names, else the file's own
  (`res_DM_...pt` → DM), else its file name."""
  path = pathlib.Path(plan.config.distilled_set)
  if len(plan.methods) == 1:
    return plan.methods[0]
  return infer_method(path) or path.name.split('.')[0].upper()


def _found_sets(plan: RunPlan) -> dict[str, pathlib.Path]:
  """{method: path} of the sets the pools hold for the run's dataset and IPC."""
  config = plan.config
  if config.distilled_set:
    return {single_set_method(plan): pathlib.Path(config.distilled_set)}
  found: dict[str, pathlib.Path] = {}
  for pool in (config.dataset_pool, config.distill_dir):
    if pool and os.path.isdir(pool):
      for method, path in find_dataset_pool(pool, plan.spec.name, config.ipc).items():
        found.setdefault(method.upper(), path)
  return found


def methods_to_build(plan: RunPlan, found: dict[str, pathlib.Path]) -> list[str]:
  """The `--distill` methods (registry names) whose sets neither pool holds, in flag order."""
  if plan.config.distilled_set:
    return []
  return [m for m in split_list(plan.config.distill) if get_method(m).pool_name not in found]


def _budget_overrides(method: str, plan: RunPlan) -> dict:
  """`--distill_hparams` (the fields `method` has), then `--distill_batch_real` for the
  methods that match real batches (DC, DSA, DM, IDM)."""
  config = plan.config
  overrides = typed_overrides(
    method, plan.spec, config.ipc, parse_overrides(config.distill_hparams)
  )
  if (
    config.distill_batch_real
    and 'batch_real' in method_config(method, plan.spec, config.ipc)._fields
  ):
    overrides['batch_real'] = config.distill_batch_real
  return overrides


def distilled_sets(plan: RunPlan) -> dict[str, pathlib.Path]:
  """{method (upper case): set path} for the run: found, then built where missing.

  In a sweep (`num_tasks > 1`) the sets are listed for every task, but a task builds
  only the methods it will train (every n-th of the sorted methods); on several
  processes the primary one builds and the others wait for it.
  """
  config = plan.config
  found = _found_sets(plan)
  build = methods_to_build(plan, found)
  names = sorted({*found, *(get_method(m).pool_name for m in build)})
  owned = set(names[config.task_index :: config.num_tasks])
  build = [m for m in build if get_method(m).pool_name in owned]
  if build and sharding.is_primary_process():
    real = load_real_split(config, plan.spec, 'train')
    for method in build:
      logging.info(
        'building %s for %s IPC %d from %d real images into %s',
        method,
        plan.spec.name,
        config.ipc,
        len(real.labels),
        config.distill_dir,
      )
      build_distilled_set(
        method,
        plan.spec,
        real.images,
        real.labels,
        config.ipc,
        key=config.seed,
        out_dir=config.distill_dir,
        iterations=config.distill_iterations or None,
        hparams=_budget_overrides(method, plan),
      )
  if build:
    sharding.barrier('distilled sets built')
  return _found_sets(plan)

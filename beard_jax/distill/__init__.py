"""Builds distilled datasets for the pool: coreset baselines, DC, DSA, DM, IDM, BACON,
MTT, resumable.

Public API:
  build_distilled_set(method, spec, real_images, real_labels, ipc, *, key, out_dir, ...)
      -> path of the written `.pt` (plus `.npz` twin and JSON sidecars; `pool_files`).
  METHODS / get_method(name): the registry ('random', 'herding', 'kcenter', 'dc', 'dsa',
      'dm', 'idm', 'bacon', 'mtt').
  method_config(method, spec, ipc, hparams): a method's official hyperparameters.
  parse_overrides / typed_overrides: 'name=value,...' hyperparameter overrides (CLI).
  Progress / LogProgress: progress reports of iterative runs.
"""

from beard_jax.distill.build import (
  METHODS,
  Method,
  build_distilled_set,
  get_method,
  method_config,
  parse_overrides,
  typed_overrides,
)
from beard_jax.distill.coreset import CoresetConfig
from beard_jax.distill.dm import DMConfig
from beard_jax.distill.idm import IDMConfig
from beard_jax.distill.mtt import MTTConfig
from beard_jax.distill.resumable import LogProgress, Progress

__all__ = [
  'METHODS',
  'CoresetConfig',
  'DMConfig',
  'IDMConfig',
  'LogProgress',
  'MTTConfig',
  'Method',
  'Progress',
  'build_distilled_set',
  'get_method',
  'method_config',
  'parse_overrides',
  'typed_overrides',
]

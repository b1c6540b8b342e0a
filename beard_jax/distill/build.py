"""`build_distilled_set`: one call from real data to a dataset-pool entry, resumable.

  path = build_distilled_set('dm', spec, images, labels, ipc=10,
                             key=jax.random.key(0), iterations=20001, out_dir='pool')

runs the method, checkpointing iterative ones every `checkpoint_every`
iterations (a rerun of the same call continues from the checkpoint and ends
where an uninterrupted run ends), and writes the set with `pool_files`. A rerun
after completion finds the sidecar of the same run and returns at once.

Methods (`METHODS`, `get_method`): `random`, `herding`, `kcenter` (coresets of
real images, `coreset`), `dc` and `dsa` (`dc`), `dm` (`dm`), `idm` (`idm`) and `mtt`
(`mtt`, its expert buffers kept under `out_dir/.mtt_experts/`), `bacon` (`bacon`: IDM's loop
with BACON's Bayesian matching term).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
from absl import logging

from beard_jax import provenance
from beard_jax.data.specs import DatasetSpec
from beard_jax.distill import (
  bacon,
  coreset,
  dc,
  dm,
  experts,
  idm,
  mtt,
  pool_files,
  real_data,
  resumable,
  zca,
)
from beard_jax.models.convnet import ConvNet


class RunContext(NamedTuple):
  """What a method's runner gets.

  Attributes:
    key: the run's `jax.random` key.
    data: the real set, class-indexed on the device.
    spec: the dataset.
    ipc: images per class.
    config: the method's hyperparameters (its config NamedTuple).
    iterations: iterations to run (0 for coresets).
    options: checkpointing and progress of iterative runs.
    real_images: uint8 [N, H, W, C], the real set as given.
    real_labels: int [N].
    out_dir: the pool root (MTT keeps its expert buffers under it).
  """

  key: jax.Array
  data: real_data.ClassIndexedData
  spec: DatasetSpec
  ipc: int
  config: Any
  iterations: int
  options: resumable.RunOptions
  real_images: np.ndarray
  real_labels: np.ndarray
  out_dir: str


class Method(NamedTuple):
  """A distillation method of the registry.

  Attributes:
    pool_name: its name in pool file names (`DM`, `IDM`, `RANDOM`, …).
    default_config: `(dataset, ipc) -> config` with the official defaults.
    default_iterations: iterations when none are asked for (0: not iterative).
    run: `run(context) -> (normalised images [K·ipc, H, W, C], seconds, extra sidecar
      metadata)`.
  """

  pool_name: str
  default_config: Callable[[str, int], Any]
  default_iterations: int
  run: Callable[[RunContext], tuple[np.ndarray, float, dict[str, Any]]]


def _run_dm(ctx: RunContext) -> tuple[np.ndarray, float, dict[str, Any]]:
  state = dm.init_state(ctx.key, ctx.data, ctx.spec, ctx.ipc, ctx.config)
  chunk = functools.partial(dm.run_chunk, data=ctx.data, spec=ctx.spec, config=ctx.config)
  state, seconds = resumable.run_iterations(chunk, state, ctx.iterations, ctx.options)
  return np.asarray(state.images).reshape(-1, *ctx.spec.image_shape), seconds, {}


def _run_dc(ctx: RunContext) -> tuple[np.ndarray, float, dict[str, Any]]:
  state = dc.init_state(ctx.key, ctx.data, ctx.spec, ctx.ipc, ctx.config)
  chunk = functools.partial(dc.run_chunk, data=ctx.data, spec=ctx.spec, config=ctx.config)
  state, seconds = resumable.run_iterations(chunk, state, ctx.iterations, ctx.options)
  return np.asarray(state.images).reshape(-1, *ctx.spec.image_shape), seconds, {}


def _run_idm(
  ctx: RunContext, matching: idm.Matching = idm.mean_squared_distance
) -> tuple[np.ndarray, float, dict[str, Any]]:
  """IDM's loop; BACON's is the same with its `matching` term."""
  state = idm.init_state(ctx.key, ctx.data, ctx.spec, ctx.ipc, ctx.config)
  chunk = functools.partial(
    idm.run_chunk, data=ctx.data, spec=ctx.spec, config=ctx.config, matching=matching
  )
  state, seconds = resumable.run_iterations(chunk, state, ctx.iterations, ctx.options)
  return np.asarray(idm.finalize(state)), seconds, {}


def _run_mtt(ctx: RunContext) -> tuple[np.ndarray, float, dict[str, Any]]:
  config = ctx.config
  mtt.check_config(config)
  real_data.check_ipc(ctx.data, ctx.ipc)
  whitening = zca.fit_zca(ctx.real_images, config.zca_eps) if config.zca else None
  inputs = mtt.to_model_input(
    ctx.spec, whitening, jax.numpy.asarray(ctx.real_images, jax.numpy.float32) / 255.0
  )
  model = ConvNet(ctx.spec.num_classes, width=config.net_width, depth=config.net_depth)
  experts_config = mtt.expert_config(config)
  description = {
    'dataset': ctx.spec.name,
    'real_data': real_data.real_data_sha256(ctx.real_images, ctx.real_labels),
    'zca_eps': config.zca_eps if config.zca else None,
    'net': [config.net_width, config.net_depth],
  }
  key_data = np.asarray(jax.random.key_data(ctx.key)).tolist()
  buffer_hash = provenance.config_hash(
    {**description, 'experts': experts_config._asdict(), 'key': key_data}
  )
  buffer_dir = os.path.join(ctx.out_dir, '.mtt_experts', buffer_hash)
  key_experts, key_distill = jax.random.split(ctx.key)
  trajectories, experts_seconds = experts.build_buffer(
    key_experts,
    inputs,
    jax.numpy.asarray(ctx.real_labels, jax.numpy.int32),
    model,
    ctx.spec,
    experts_config,
    buffer_dir,
    description,
    mtt.epochs_needed(config),
    ctx.options.progress,
  )
  del inputs
  state = mtt.init_state(key_distill, ctx.data, whitening, ctx.spec, ctx.ipc, config)
  chunk = functools.partial(mtt.run_chunk, trajectories=trajectories, spec=ctx.spec, config=config)
  state, seconds = resumable.run_iterations(chunk, state, ctx.iterations, ctx.options)
  images = mtt.to_normalized(ctx.spec, whitening, state.images)
  extra = {
    'learned_lr': float(state.syn_lr),
    'expert_buffer': buffer_dir,
    'experts_seconds': experts_seconds,
  }
  return np.asarray(images).reshape(-1, *ctx.spec.image_shape), seconds, extra


def _embeddings(ctx: RunContext, key: jax.Array) -> jax.Array:
  config = ctx.config
  model = ConvNet(ctx.spec.num_classes, width=config.net_width, depth=config.net_depth)
  params = coreset.feature_params(key, model, ctx.spec, config, ctx.real_images, ctx.real_labels)
  return coreset.class_features(model, params, ctx.data, ctx.spec, config.embed_batch)


def _run_coreset(ctx: RunContext, select: str) -> tuple[np.ndarray, float, dict[str, Any]]:
  start = time.perf_counter()
  logging.info('%s: selecting %d real images per class', ctx.options.label, ctx.ipc)
  key_net, key_select = jax.random.split(ctx.key)
  if select == 'random':
    selection = coreset.select_random(key_select, ctx.data, ctx.ipc)
  elif select == 'herding':
    selection = coreset.select_herding(_embeddings(ctx, key_net), ctx.data.counts, ctx.ipc)
  else:
    features = _embeddings(ctx, key_net)
    selection = coreset.select_kcenter(key_select, features, ctx.data.counts, ctx.ipc)
  images = np.asarray(coreset.gather_selection(ctx.data, ctx.spec, selection))
  return images, time.perf_counter() - start, {}


def _coreset_config(dataset: str, ipc: int) -> coreset.CoresetConfig:
  del dataset, ipc  # The same for every dataset and IPC.
  return coreset.CoresetConfig()


def _dm_config(dataset: str, ipc: int) -> dm.DMConfig:
  del dataset, ipc
  return dm.DMConfig()


METHODS: dict[str, Method] = {
  'random': Method('RANDOM', _coreset_config, 0, functools.partial(_run_coreset, select='random')),
  'herding': Method(
    'HERDING', _coreset_config, 0, functools.partial(_run_coreset, select='herding')
  ),
  'kcenter': Method(
    'KCENTER', _coreset_config, 0, functools.partial(_run_coreset, select='kcenter')
  ),
  'dc': Method('DC', functools.partial(dc.official_config, 'dc'), dc.OFFICIAL_ITERATIONS, _run_dc),
  'dsa': Method(
    'DSA', functools.partial(dc.official_config, 'dsa'), dc.OFFICIAL_ITERATIONS, _run_dc
  ),
  'dm': Method('DM', _dm_config, dm.OFFICIAL_ITERATIONS, _run_dm),
  'mtt': Method('MTT', mtt.official_config, mtt.OFFICIAL_ITERATIONS, _run_mtt),
  'idm': Method('IDM', idm.official_config, idm.OFFICIAL_ITERATIONS, _run_idm),
  'bacon': Method(
    'BACON',
    bacon.official_config,
    bacon.OFFICIAL_ITERATIONS,
    functools.partial(_run_idm, matching=bacon.bayesian_distance),
  ),
}


def get_method(name: str) -> Method:
  """The registered method `name` (case-insensitive)."""
  key = name.strip().lower()
  if key not in METHODS:
    raise ValueError(f'unknown distillation method {name!r}; choose from {sorted(METHODS)}')
  return METHODS[key]


def method_config(method: str, spec: DatasetSpec, ipc: int, hparams: dict[str, Any] | None = None):
  """The method's official config for `spec` and `ipc`, with `hparams` overriding fields.

  Raises:
    ValueError: an unknown method or hyperparameter name (the message lists the valid ones).
  """
  config = get_method(method).default_config(spec.name, ipc)
  unknown = sorted(set(hparams or {}) - set(config._fields))
  if unknown:
    raise ValueError(f'unknown {method} hyperparameters {unknown}; choose from {config._fields}')
  return config._replace(**(hparams or {}))


_TRUE, _FALSE = ('true', '1', 'yes'), ('false', '0', 'no')


def _typed(name: str, text: str, like: Any) -> Any:
  """`text` as the type of the field's default `like` (bool, int, float or str)."""
  try:
    if isinstance(like, bool):
      if text.lower() not in _TRUE + _FALSE:
        raise ValueError(text)
      return text.lower() in _TRUE
    return type(like)(text)
  except ValueError:
    kind = {bool: 'true or false', int: 'an integer', float: 'a number'}.get(type(like), 'text')
    raise ValueError(f'{name}={text!r} is not {kind}') from None


def parse_overrides(text: str) -> dict[str, str]:
  """'name=value,name=value' → {name: value} (strings; `typed_overrides` types them).

  Raises:
    ValueError: an entry without '=' or a name given twice.
  """
  overrides: dict[str, str] = {}
  for entry in filter(None, (part.strip() for part in text.split(','))):
    name, sep, value = entry.partition('=')
    if not sep or not name.strip():
      raise ValueError(f'expected name=value, got {entry!r}')
    if name.strip() in overrides:
      raise ValueError(f'{name.strip()} is given twice')
    overrides[name.strip()] = value.strip()
  return overrides


def typed_overrides(
  method: str, spec: DatasetSpec, ipc: int, overrides: dict[str, str]
) -> dict[str, Any]:
  """The entries of `overrides` that are fields of `method`'s config, typed as the fields.

  Raises:
    ValueError: a value that does not parse as its field's type.
  """
  config = method_config(method, spec, ipc)
  return {
    name: _typed(name, value, getattr(config, name))
    for name, value in overrides.items()
    if name in config._fields
  }


def _as_key(key: jax.Array | int) -> tuple[jax.Array, int | None]:
  """A typed key and the int seed it came from (None when a key was given)."""
  if isinstance(key, int | np.integer):
    return jax.random.key(int(key)), int(key)
  if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
    raise TypeError(
      'key must be a typed jax.random.key(...) or an int seed (raw uint32 keys are ambiguous)'
    )
  return key, None


def _describe_run(
  name: str, spec: DatasetSpec, ipc: int, config, key: jax.Array, seed: int | None, real: dict
) -> dict[str, Any]:
  """The facts that identify a run (hashed into its fingerprint)."""
  return {
    'method': get_method(name).pool_name,
    'dataset': spec.name,
    'ipc': ipc,
    'num_classes': spec.num_classes,
    'hyperparameters': config._asdict(),
    'seed': seed,
    'key_data': np.asarray(jax.random.key_data(key)).tolist(),
    'key_impl': str(jax.random.key_impl(key)),
    'real_data': real,
  }


def build_distilled_set(
  method: str,
  spec: DatasetSpec,
  real_images: np.ndarray,
  real_labels: np.ndarray,
  ipc: int,
  *,
  key: jax.Array | int,
  out_dir: str | os.PathLike,
  iterations: int | None = None,
  hparams: dict[str, Any] | None = None,
  checkpoint_every: int = 500,
  progress: resumable.ProgressFn | None = None,
  keep_checkpoint: bool = False,
) -> str:
  """Distils (or selects) `ipc` images per class and writes them into the pool at `out_dir`.

  Args:
    method: `random`, `herding`, `kcenter`, `dc`, `dsa`, `dm`, `idm`, `bacon` or `mtt`
      (`METHODS`).
    spec: the dataset of the real images.
    real_images: uint8 [N, H, W, C], 0..255, the real training set (or a subset).
    real_labels: int [N] in [0, K).
    ipc: images per class (stored images: IDM's are 4-in-1).
    key: a `jax.random` key, or an int seed (recorded in the sidecar).
    out_dir: the pool root (layout: `pool_files`).
    iterations: updates of an iterative method (default: the official 20,001);
      ignored by the coresets (recorded as 0).
    hparams: overrides of the method's official hyperparameters (field names of
      `dm.DMConfig`, `idm.IDMConfig`, `dc.DCConfig`, `mtt.MTTConfig` or
      `coreset.CoresetConfig`).
    checkpoint_every: iterations between checkpoints of iterative methods.
    progress: called with a `resumable.Progress` after every chunk of iterations;
      default: absl logging at most every 30 s.
    keep_checkpoint: keep the final checkpoint, so that a later call with more
      `iterations` (same everything else) continues from this one and ends where
      one run of that length ends (accuracy against iterations in one pass).

  Returns:
    The path of the `.pt` set (its `.npz` twin and sidecars are written too).

  Raises:
    ValueError: an unknown method or hyperparameter, real data that do not fit
      `spec`, a class with fewer than `ipc` images, a checkpoint of another run.
    FloatingPointError: the loss became NaN or infinite (nothing is written).
  """
  selected = get_method(method)
  config = method_config(method, spec, ipc, hparams)
  key, seed = _as_key(key)
  if not selected.default_iterations:
    iterations = 0  # A coreset is selected in one shot.
  elif iterations is None:
    iterations = selected.default_iterations
  real_images, real_labels = np.asarray(real_images), np.asarray(real_labels)
  if real_images.shape[1:] != spec.image_shape:
    raise ValueError(f'real images {real_images.shape} do not fit {spec.name} {spec.image_shape}')
  real = {
    'sha256': real_data.real_data_sha256(real_images, real_labels),
    'num_images': int(real_images.shape[0]),
  }
  description = _describe_run(method, spec, ipc, config, key, seed, real)
  fingerprint = provenance.config_hash(description)
  paths = pool_files.pool_paths(out_dir, selected.pool_name, spec, ipc)
  done = pool_files.read_sidecar(paths.pt_sidecar)
  if done and done.get('fingerprint') == fingerprint and done.get('iterations') == iterations:
    logging.info('%s exists for this run (fingerprint %s); not rebuilding', paths.pt, fingerprint)
    return str(paths.pt)
  label = f'{selected.pool_name} {spec.name} IPC {ipc}'
  options = resumable.RunOptions(
    str(paths.checkpoint), checkpoint_every, fingerprint, label, progress or resumable.LogProgress()
  )
  data = real_data.index_by_class(real_images, real_labels, spec.num_classes)
  context = RunContext(
    key, data, spec, ipc, config, iterations, options, real_images, real_labels, str(out_dir)
  )
  images, seconds, extra = selected.run(context)
  labels = np.repeat(np.arange(spec.num_classes), ipc)
  metadata = {
    **description,
    'iterations': iterations,
    'fingerprint': fingerprint,
    'factorized_4in1': bool(getattr(config, 'factorized', False)),
    'wall_seconds': seconds,
    **extra,
    'versions': provenance.library_versions(),
  }
  pool_files.write_pool_files(paths, spec, images, labels, metadata)
  if paths.checkpoint.exists() and not keep_checkpoint:
    paths.checkpoint.unlink()
  logging.info('%s: wrote %s (%.1f s)', label, paths.pt, seconds)
  return str(paths.pt)

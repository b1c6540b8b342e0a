"""The model pool on disk: parameters as msgpack plus a JSON sidecar.

A checkpoint `<stem>` is two files:
  * `<stem>.msgpack`: the parameter pytree, written by Flax's msgpack
    serialiser (plain arrays and dicts; reading it runs no code);
  * `<stem>.json`: the sidecar: method, dataset, IPC, seed, protocol, recipe,
    clean accuracy, library versions, and the sha256 and byte size of the
    msgpack file.
Both are written atomically, parameters first; the sidecar is the commit
record, so a write killed at any point leaves either nothing loadable or the
complete checkpoint. Loading checks the hash, so a corrupted or swapped
parameter file is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import jax
import numpy as np
from flax import serialization

from beard_jax.io.atomic import atomic_write_bytes, atomic_write_text

PARAMS_SUFFIX = '.msgpack'
SIDECAR_SUFFIX = '.json'
FORMAT_VERSION = 1


class CheckpointError(ValueError):
  """A checkpoint that is missing, incomplete, corrupt or inconsistent."""


def save_checkpoint(stem: str | os.PathLike, params: Any, metadata: dict[str, Any]) -> str:
  """Writes `params` and its sidecar; returns the sidecar path.

  Args:
    stem: path without suffix, e.g. `<workdir>/models/DC_cifar10_ipc10_seed0`.
    params: a pytree of arrays (one model; not stacked over seeds).
    metadata: JSON-able facts (method, dataset, ipc, seed, protocol, recipe,
      clean_acc, versions, …); `format_version`, `params_sha256` and
      `params_bytes` are added.
  """
  stem = os.fspath(stem)
  state = jax.tree_util.tree_map(np.asarray, params)
  blob = serialization.msgpack_serialize(state)
  atomic_write_bytes(stem + PARAMS_SUFFIX, blob)
  sidecar = dict(metadata)
  sidecar.update(
    format_version=FORMAT_VERSION,
    params_file=os.path.basename(stem + PARAMS_SUFFIX),
    params_sha256=hashlib.sha256(blob).hexdigest(),
    params_bytes=len(blob),
  )
  atomic_write_text(stem + SIDECAR_SUFFIX, json.dumps(sidecar, indent=2, sort_keys=True))
  return stem + SIDECAR_SUFFIX


def load_checkpoint(stem_or_sidecar: str | os.PathLike) -> tuple[Any, dict[str, Any]]:
  """Reads a checkpoint written by `save_checkpoint`, bit-exact.

  Args:
    stem_or_sidecar: the stem, or the `.json` / `.msgpack` path.

  Returns:
    (params as a pytree of numpy arrays, the sidecar dict).

  Raises:
    CheckpointError: missing sidecar or parameters, a hash or size mismatch,
      undecodable msgpack, NaN/inf parameters.
  """
  stem = os.fspath(stem_or_sidecar)
  for suffix in (SIDECAR_SUFFIX, PARAMS_SUFFIX):
    if stem.endswith(suffix):
      stem = stem[: -len(suffix)]
  sidecar_path, params_path = stem + SIDECAR_SUFFIX, stem + PARAMS_SUFFIX
  if not os.path.isfile(sidecar_path):
    raise CheckpointError(f'{sidecar_path}: no sidecar; the checkpoint is missing or incomplete')
  try:
    with open(sidecar_path, encoding='utf-8') as f:
      sidecar = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise CheckpointError(f'{sidecar_path}: not valid JSON ({e})') from e
  if not isinstance(sidecar, dict) or 'params_sha256' not in sidecar:
    raise CheckpointError(f'{sidecar_path}: expected a JSON object with params_sha256')
  if not os.path.isfile(params_path):
    raise CheckpointError(f'{params_path}: missing (its sidecar {sidecar_path} exists)')
  with open(params_path, 'rb') as f:
    blob = f.read()
  digest = hashlib.sha256(blob).hexdigest()
  if digest != sidecar['params_sha256'] or len(blob) != sidecar.get('params_bytes'):
    raise CheckpointError(
      f'{params_path}: sha256 {digest[:12]}… ({len(blob)} bytes) does not match the sidecar '
      f'({sidecar["params_sha256"][:12]}…, {sidecar.get("params_bytes")} bytes): '
      'corrupt or replaced'
    )
  try:
    params = serialization.msgpack_restore(blob)
  except Exception as e:  # msgpack raises several unrelated types on bad input.
    raise CheckpointError(f'{params_path}: not a msgpack parameter file ({e})') from e
  for leaf in jax.tree_util.tree_leaves(params):
    if not np.all(np.isfinite(leaf)):
      raise CheckpointError(f'{params_path}: parameters hold NaN or infinite values')
  return params, sidecar


def list_files(directory: str | os.PathLike, suffix: str) -> list[str]:
  """Paths of the files in `directory` whose names end with `suffix`, sorted.

  Names are compared literally (no glob patterns, so a folder such as `pool[1]`
  works); hidden files (`.name`) are skipped, as a `*` glob would.
  """
  directory = os.fspath(directory)
  names = sorted(n for n in os.listdir(directory) if n.endswith(suffix) and not n.startswith('.'))
  paths = [os.path.join(directory, n) for n in names]
  return [p for p in paths if os.path.isfile(p)]


def list_checkpoints(directory: str | os.PathLike) -> list[str]:
  """Stems of the complete (sidecar present) checkpoints in `directory`, sorted."""
  stems = [p[: -len(SIDECAR_SUFFIX)] for p in list_files(directory, SIDECAR_SUFFIX)]
  return [stem for stem in stems if os.path.isfile(stem + PARAMS_SUFFIX)]

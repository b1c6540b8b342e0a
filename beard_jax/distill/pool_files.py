"""Writes a distilled set into a dataset pool: BEARD's `.pt`, an `.npz` twin, JSON sidecars.

Layout under `out_dir` (what `dataset_pool.find_dataset_pool` discovers):

  out_dir/<METHOD>/res_<METHOD>_<DATASET>_ConvNet_<IPC>ipc.pt     BEARD / DC / DM layout
  out_dir/<METHOD>/res_<METHOD>_<DATASET>_ConvNet_<IPC>ipc.json   its sidecar
  out_dir/npz/<METHOD>/<METHOD>_<DATASET>_<IPC>ipc.npz            the `.npz` twin
  out_dir/npz/<METHOD>/<METHOD>_<DATASET>_<IPC>ipc.json           its sidecar

so `find_dataset_pool(out_dir, ...)` returns the `.pt` files and
`find_dataset_pool(out_dir / 'npz', ...)` the `.npz` ones. (Both in one folder
would make the pool reader see two sets of the same method and refuse.)
<DATASET> is BEARD's spelling (`CIFAR10`, `CIFAR100`, `TinyImageNet`).

  * `.pt`: `{'data': [[images, labels]], 'accs_all_exps': {}}` written by
    `io.torch_save` (torch-free); images float32 [N, C, H, W] mean/std-normalised,
    labels int64 [N], class-major: what `torch.load` of a DC/DM/IDM result gives.
  * `.npz`: `images` float32 [N, H, W, C] in PIXEL scale, `labels` int64 [N]; the
    pixels are computed as `normalised · std + mean` in float32, exactly as the pool
    reader undoes the `.pt`'s normalisation, so both files load to the same bits.
  * IDM's sets hold 4-in-1 images, stored as optimised (N = K·ipc); the pool reader
    splits them (`factorized=True` is its default for IDM).

The set files are written first, the sidecars last, each atomically: a sidecar
means a complete set.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pathlib
from typing import Any, NamedTuple

import numpy as np

from beard_jax.data.specs import DatasetSpec
from beard_jax.io.atomic import atomic_write_bytes, atomic_write_text
from beard_jax.io.torch_save import save_torch_file

BEARD_DATASET_NAMES = {'cifar10': 'CIFAR10', 'cifar100': 'CIFAR100', 'tinyimagenet': 'TinyImageNet'}
NPZ_FOLDER = 'npz'


class PoolPaths(NamedTuple):
  """Where one set's files go (see the module docstring).

  Attributes:
    pt: the `.pt` file.
    pt_sidecar: its JSON sidecar.
    npz: the `.npz` file.
    npz_sidecar: its JSON sidecar.
    checkpoint: the resumable run's state while it runs (removed when done).
  """

  pt: pathlib.Path
  pt_sidecar: pathlib.Path
  npz: pathlib.Path
  npz_sidecar: pathlib.Path
  checkpoint: pathlib.Path


def pool_paths(out_dir: str | os.PathLike, method: str, spec: DatasetSpec, ipc: int) -> PoolPaths:
  """The file names of `method`'s set (pool name, e.g. `DM`) for `spec` at `ipc`."""
  root = pathlib.Path(out_dir)
  dataset = BEARD_DATASET_NAMES.get(spec.name, spec.name)
  stem = f'res_{method}_{dataset}_ConvNet_{ipc}ipc'
  npz_stem = f'{method}_{dataset}_{ipc}ipc'
  return PoolPaths(
    pt=root / method / f'{stem}.pt',
    pt_sidecar=root / method / f'{stem}.json',
    npz=root / NPZ_FOLDER / method / f'{npz_stem}.npz',
    npz_sidecar=root / NPZ_FOLDER / method / f'{npz_stem}.json',
    checkpoint=root / method / f'.{stem}.resume.npz',
  )


def to_pixels(spec: DatasetSpec, normalized: np.ndarray) -> np.ndarray:
  """Normalised [..., C] float32 → pixel scale, as the pool reader computes it (x·std + mean)."""
  mean, std = np.asarray(spec.mean, np.float32), np.asarray(spec.std, np.float32)
  return np.asarray(normalized, np.float32) * std + mean


def _sha256(path: pathlib.Path) -> str:
  return hashlib.sha256(path.read_bytes()).hexdigest()


def write_pool_files(
  paths: PoolPaths,
  spec: DatasetSpec,
  normalized: np.ndarray,
  labels: np.ndarray,
  metadata: dict[str, Any],
) -> None:
  """Writes the `.pt`, the `.npz` and their sidecars (the sidecars last).

  Args:
    paths: from `pool_paths`.
    spec: the dataset (normalisation and shape).
    normalized: float32 [N, H, W, C], mean/std-normalised, class-major.
    labels: int [N] in [0, K).
    metadata: JSON-able facts for the sidecars (method, hyperparameters, …); the
      files' names and sha256 are added.

  Raises:
    ValueError: shapes that do not fit `spec`, or non-finite images.
  """
  normalized = np.asarray(normalized, np.float32)
  labels = np.asarray(labels, np.int64)
  if normalized.ndim != 4 or normalized.shape[1:] != spec.image_shape:
    raise ValueError(
      f'expected images [N, {spec.image_shape}] for {spec.name}, got {normalized.shape}'
    )
  if labels.shape != normalized.shape[:1]:
    raise ValueError(f'{normalized.shape[0]} images but labels of shape {labels.shape}')
  if not np.isfinite(normalized).all():
    raise ValueError('the distilled images hold NaN or infinite values; nothing written')
  nchw = np.ascontiguousarray(normalized.transpose(0, 3, 1, 2))
  save_torch_file(paths.pt, {'data': [[nchw, labels]], 'accs_all_exps': {}})
  buffer = io.BytesIO()
  np.savez(buffer, images=to_pixels(spec, normalized), labels=labels)
  atomic_write_bytes(paths.npz, buffer.getvalue())
  root = paths.pt.parent.parent
  files = {
    'pt': str(paths.pt.relative_to(root)),
    'npz': str(paths.npz.relative_to(root)),
    'sha256': {'pt': _sha256(paths.pt), 'npz': _sha256(paths.npz)},
  }
  text = json.dumps({**metadata, 'files': files}, indent=2, sort_keys=True) + '\n'
  atomic_write_text(paths.npz_sidecar, text)
  atomic_write_text(paths.pt_sidecar, text)


def read_sidecar(path: str | os.PathLike) -> dict[str, Any] | None:
  """The JSON sidecar at `path`, or None when there is none."""
  path = pathlib.Path(path)
  return json.loads(path.read_text()) if path.is_file() else None

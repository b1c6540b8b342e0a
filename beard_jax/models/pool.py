"""Discovering and loading the models of a model-pool directory.

Two kinds of files are recognised:
  * project checkpoints (`<stem>.json` + `<stem>.msgpack`, see `checkpoints`),
    whose sidecar names method, dataset, IPC, seed and training;
  * BEARD's published PyTorch `.pth` files, named
    `<METHOD>_ConvNet_<DATASET>_<IPC>_<TAG>[_<ACC>].pth`; they are seed 0,
    standard training, and take normalised input.
"""

from __future__ import annotations

import json
import os
from typing import Any, NamedTuple

from beard_jax.data.specs import canonical_dataset_name
from beard_jax.models import checkpoints
from beard_jax.models.convnet import ConvNet
from beard_jax.models.torch_import import load_torch_convnet, parse_beard_checkpoint_name


class ModelEntry(NamedTuple):
  """One model of a pool: what it was trained on and where it lives."""

  method: str
  dataset: str
  ipc: int
  seed: int
  training: str  # 'standard' or 'adversarial'
  path: str
  kind: str  # 'checkpoint' or 'beard_pth'


def discover_models(pool_dir: str, dataset: str | None = None) -> list[ModelEntry]:
  """Lists the models in `pool_dir` (optionally only those of `dataset`), sorted.

  Raises:
    FileNotFoundError: `pool_dir` does not exist.
    ValueError: a `.pth` whose name does not follow BEARD's convention.
  """
  if not os.path.isdir(pool_dir):
    raise FileNotFoundError(f'model pool directory {pool_dir!r} does not exist')
  entries = []
  for path in checkpoints.list_files(pool_dir, '.pth'):
    info = parse_beard_checkpoint_name(path)
    entries.append(
      ModelEntry(
        method=info['method'],
        dataset=canonical_dataset_name(info['dataset']),
        ipc=info['ipc'],
        seed=0,
        training='standard',
        path=path,
        kind='beard_pth',
      )
    )
  for stem in checkpoints.list_checkpoints(pool_dir):
    with open(stem + checkpoints.SIDECAR_SUFFIX, encoding='utf-8') as f:
      sidecar = json.load(f)
    entries.append(
      ModelEntry(
        method=sidecar['method'],
        dataset=canonical_dataset_name(sidecar['dataset']),
        ipc=int(sidecar['ipc']),
        seed=int(sidecar['seed']),
        training=sidecar.get('training', 'standard'),
        path=stem,
        kind='checkpoint',
      )
    )
  if dataset is not None:
    wanted = canonical_dataset_name(dataset)
    entries = [e for e in entries if e.dataset == wanted]
  return sorted(entries, key=lambda e: (e.method, e.ipc, e.training, e.seed, e.path))


def load_model_params(entry: ModelEntry, model: ConvNet, image_size: int) -> Any:
  """Parameters of `entry` for `model.apply` on normalised input."""
  if entry.kind == 'beard_pth':
    return load_torch_convnet(entry.path, model, image_size)
  params, _ = checkpoints.load_checkpoint(entry.path)
  return params

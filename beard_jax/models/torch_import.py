"""Imports PyTorch ConvNet state_dicts (BEARD's `.pth` model pool) as Flax parameters."""

from __future__ import annotations

import os
import re

import numpy as np

from beard_jax.io.torch_files import load_torch_file
from beard_jax.models.convnet import ConvNet, Params


class CheckpointMismatchError(ValueError):
  """A state_dict whose keys or shapes do not fit the requested ConvNet."""


def _expected_shapes(model: ConvNet, image_size: int, in_channels: int) -> dict[str, tuple]:
  shapes = {}
  channels = in_channels
  for block in range(model.depth):
    conv, norm = 4 * block, 4 * block + 1
    shapes[f'features.{conv}.weight'] = (model.width, channels, 3, 3)
    shapes[f'features.{conv}.bias'] = (model.width,)
    shapes[f'features.{norm}.weight'] = (model.width,)
    shapes[f'features.{norm}.bias'] = (model.width,)
    channels = model.width
  side = image_size // 2**model.depth
  shapes['classifier.weight'] = (model.num_classes, model.width * side * side)
  shapes['classifier.bias'] = (model.num_classes,)
  return shapes


def convert_state_dict(
  state_dict: dict[str, np.ndarray], model: ConvNet, image_size: int, in_channels: int = 3
) -> Params:
  """Maps a PyTorch ConvNet state_dict onto `model`'s Flax parameters.

  Conv kernels go OIHW → HWIO; the Linear weight [K, C·H·W] is transposed to
  [C·H·W, K] (the model flattens features in C, H, W order, as PyTorch does).

  Args:
    state_dict: PyTorch names (`features.{0,4,8}.*`, `features.{1,5,9}.*`,
      `classifier.*`) → float arrays.
    model: the ConvNet the weights are for.
    image_size: input side (32 or 64), which fixes the classifier's input size.
    in_channels: input channels (3).

  Returns:
    `{'params': ...}` for `model.apply`, float32.

  Raises:
    CheckpointMismatchError: missing or unexpected keys, wrong shapes, non-finite values.
  """
  expected = _expected_shapes(model, image_size, in_channels)
  missing = sorted(set(expected) - set(state_dict))
  unexpected = sorted(set(state_dict) - set(expected))
  if missing or unexpected:
    raise CheckpointMismatchError(
      f'state_dict does not fit ConvNet(width={model.width}, depth={model.depth}, '
      f'K={model.num_classes}) on {image_size}px inputs: missing {missing}, unexpected {unexpected}'
    )
  for name, shape in expected.items():
    value = np.asarray(state_dict[name])
    if value.shape != shape:
      raise CheckpointMismatchError(f'{name}: expected shape {shape}, found {value.shape}')
    if not np.all(np.isfinite(value)):
      raise CheckpointMismatchError(f'{name}: holds NaN or infinite values')

  def arr(name):
    return np.asarray(state_dict[name], np.float32)

  params = {}
  for block in range(model.depth):
    conv, norm = 4 * block, 4 * block + 1
    params[f'conv{block}'] = {
      'kernel': np.transpose(arr(f'features.{conv}.weight'), (2, 3, 1, 0)),
      'bias': arr(f'features.{conv}.bias'),
    }
    params[f'norm{block}'] = {
      'scale': arr(f'features.{norm}.weight'),
      'bias': arr(f'features.{norm}.bias'),
    }
  params['classifier'] = {
    'kernel': arr('classifier.weight').T.copy(),
    'bias': arr('classifier.bias'),
  }
  return {'params': params}


def load_torch_convnet(
  path: str | os.PathLike, model: ConvNet, image_size: int, in_channels: int = 3
) -> Params:
  """Reads a PyTorch ConvNet `.pth` (no pickled code runs) and converts it.

  A file that stores `{'state_dict': ...}` or `{'model': ...}` is unwrapped.
  """
  obj = load_torch_file(path)
  if isinstance(obj, dict):
    for wrapper in ('state_dict', 'model', 'net'):
      if wrapper in obj and isinstance(obj[wrapper], dict):
        obj = obj[wrapper]
        break
  if not isinstance(obj, dict):
    raise CheckpointMismatchError(f'{path}: expected a state_dict, found {type(obj).__name__}')
  try:
    return convert_state_dict(obj, model, image_size, in_channels)
  except CheckpointMismatchError as e:
    raise CheckpointMismatchError(f'{path}: {e}') from None


_BEARD_NAME = re.compile(
  r'^(?P<method>[A-Za-z0-9+\-]+)_ConvNet_(?P<dataset>[A-Za-z0-9\-]+)_(?P<ipc>\d+)_'
  r'(?P<tag>[^_]+)(?:_(?P<acc>\d*\.\d+))?\.pth?$'
)


def parse_beard_checkpoint_name(filename: str) -> dict:
  """Method, dataset and IPC from a BEARD model-pool file name.

  `DSA_ConvNet_CIFAR10_50_None_0.6048.pth` → `{'method': 'DSA', 'dataset':
  'CIFAR10', 'ipc': 50, 'tag': 'None', 'recorded_acc': 0.6048}`.

  Raises:
    ValueError: the name does not follow `<METHOD>_ConvNet_<DATASET>_<IPC>_<TAG>[_<ACC>].pth`.
  """
  match = _BEARD_NAME.match(os.path.basename(filename))
  if not match:
    raise ValueError(
      f'{filename!r} is not a BEARD model-pool name; expected '
      '<METHOD>_ConvNet_<DATASET>_<IPC>_<TAG>[_<ACC>].pth, e.g. DC_ConvNet_CIFAR10_50_None.pth'
    )
  acc = match['acc']
  return {
    'method': match['method'],
    'dataset': match['dataset'],
    'ipc': int(match['ipc']),
    'tag': match['tag'],
    'recorded_acc': float(acc) if acc else None,
  }

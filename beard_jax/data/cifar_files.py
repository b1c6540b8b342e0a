"""Reads CIFAR-10 and CIFAR-100 from the official "python version" pickle folders.

The layout, as unpacked from `cifar-10-python.tar.gz` / `cifar-100-python.tar.gz`:

  cifar-10-batches-py/   data_batch_1 … data_batch_5, test_batch, batches.meta
  cifar-100-python/      train, test, meta

Each batch is a Python 2 pickle of a dict with `bytes` keys: `b'data'` (uint8
[N, 3072], each row the 1,024 red, then green, then blue pixels of a 32×32 image
in row-major order), and `b'labels'` (CIFAR-10) or `b'fine_labels'` (CIFAR-100),
a list of N ints. The meta files hold `b'label_names'` / `b'fine_label_names'`.
The pickles are read with `beard_jax.io.torch_files.load_pickle_file`, which
runs no pickled code. Internal to `beard_jax.data.real`.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from beard_jax.io import torch_files

CIFAR10_CLASSES = (
  'airplane',
  'automobile',
  'bird',
  'cat',
  'deer',
  'dog',
  'frog',
  'horse',
  'ship',
  'truck',
)

# The fine labels of CIFAR-100 are numbered in alphabetical order of these names.
CIFAR100_CLASSES = tuple(
  sorted(
    """
  apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus
  butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch
  crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo
  keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse
  mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy
  porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper
  snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television
  tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm
  """.split()
  )
)

# dataset -> (folder name, {split: [batch files]}, label key, meta file, names key)
_LAYOUTS = {
  'cifar10': (
    'cifar-10-batches-py',
    {'train': [f'data_batch_{i}' for i in range(1, 6)], 'test': ['test_batch']},
    'labels',
    'batches.meta',
    'label_names',
  ),
  'cifar100': (
    'cifar-100-python',
    {'train': ['train'], 'test': ['test']},
    'fine_labels',
    'meta',
    'fine_label_names',
  ),
}
_DEFAULT_NAMES = {'cifar10': CIFAR10_CLASSES, 'cifar100': CIFAR100_CLASSES}


def candidate_dirs(data_dir: str | os.PathLike, name: str) -> list[pathlib.Path]:
  """Where the official folder may sit: `data_dir/<folder>` or `data_dir/<name>/<folder>`."""
  folder = _LAYOUTS[name][0]
  root = pathlib.Path(data_dir)
  return [root / folder, root / name / folder]


def _str_keys(batch, path) -> dict:
  if not isinstance(batch, dict):
    raise ValueError(f'{path}: expected a pickled dict, found {type(batch).__name__}')
  return {k.decode('latin1') if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _read_batch(path: pathlib.Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
  batch = _str_keys(torch_files.load_pickle_file(path), path)
  missing = [k for k in ('data', label_key) if k not in batch]
  if missing:
    raise ValueError(f'{path}: missing keys {missing}; found {sorted(batch)}')
  data = np.asarray(batch['data'])
  labels = np.asarray(batch[label_key])
  if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
    raise ValueError(f'{path}: expected data uint8 [N, 3072], found {data.dtype} {data.shape}')
  if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(
      f'{path}: expected {data.shape[0]} integer labels, found {labels.dtype} {labels.shape}'
    )
  images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # Planar RGB rows -> NHWC.
  return images, labels.astype(np.int32)


def _read_names(directory: pathlib.Path, name: str) -> tuple[str, ...]:
  _, _, _, meta_file, names_key = _LAYOUTS[name]
  meta_path = directory / meta_file
  if not meta_path.is_file():
    return _DEFAULT_NAMES[name]
  meta = _str_keys(torch_files.load_pickle_file(meta_path), meta_path)
  if names_key not in meta:
    raise ValueError(f'{meta_path}: missing key {names_key!r}; found {sorted(meta)}')
  return tuple(n.decode('latin1') if isinstance(n, bytes) else str(n) for n in meta[names_key])


def load_cifar_python(
  directory: str | os.PathLike, name: str, split: str
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
  """Reads one split from an official CIFAR python folder.

  Args:
    directory: the `cifar-10-batches-py` or `cifar-100-python` folder.
    name: `cifar10` or `cifar100`.
    split: `train` (the 50,000 images, batches in order) or `test` (10,000).

  Returns:
    images uint8 [N, 32, 32, 3] RGB in 0..255, labels int32 [N], class names.

  Raises:
    FileNotFoundError: a batch file of the split is missing.
    beard_jax.io.torch_files.UnsafeFileError: a batch asks to run code.
    ValueError: a batch does not have the official keys, dtypes or shapes.
  """
  directory = pathlib.Path(directory)
  _, files, label_key, _, _ = _LAYOUTS[name]
  paths = [directory / f for f in files[split]]
  missing = [str(p) for p in paths if not p.is_file()]
  if missing:
    raise FileNotFoundError(f'{directory} lacks the {split} batches {missing}')
  parts = [_read_batch(p, label_key) for p in paths]
  images = np.concatenate([p[0] for p in parts])
  labels = np.concatenate([p[1] for p in parts])
  return np.ascontiguousarray(images), labels, _read_names(directory, name)

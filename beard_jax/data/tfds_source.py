"""Reads CIFAR-10/100 prepared by tensorflow-datasets, without TensorFlow.

For users who ran `tfds build cifar10` (or `tfds.load`) somewhere: the prepared
folder `<data_dir>/<name>/<version>/` with `dataset_info.json` and
`<name>-<split>.array_record-*` shards is read through `tfds.data_source`, which
needs no TensorFlow (Pillow decodes the PNG-encoded images). Only the
array_record file format can be read that way; a tfrecord-only folder is
reported, not read.

This module never downloads: it first checks that the prepared files exist and
then calls `tfds.data_source(..., download=False)`. (Offline, an unprepared tfds
dataset retries its download for minutes; see shared ENVIRONMENT.md.) tfds has
no Tiny-ImageNet builder. Internal to `beard_jax.data.real`.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

TFDS_NAMES = {'cifar10': 'cifar10', 'cifar100': 'cifar100'}


def prepared_dir(data_dir: str | os.PathLike, name: str, split: str) -> pathlib.Path | None:
  """The newest prepared `<data_dir>/<name>/<version>` holding array_record shards of `split`."""
  root = pathlib.Path(data_dir) / TFDS_NAMES[name]
  versions = sorted(p.parent for p in root.glob('*/dataset_info.json'))
  for version in reversed(versions):
    if any(version.glob(f'{TFDS_NAMES[name]}-{split}.array_record*')):
      return version
  return None


def describe_missing(data_dir: str | os.PathLike, name: str, split: str) -> str:
  """Why `prepared_dir` found nothing, for the caller's FileNotFoundError."""
  root = pathlib.Path(data_dir) / TFDS_NAMES[name]
  if any(root.glob(f'*/{TFDS_NAMES[name]}-{split}.tfrecord*')):
    return f'{root}/<version>/ holds tfrecord shards only; tfds.data_source needs array_record'
  return f'{root}/<version>/{TFDS_NAMES[name]}-{split}.array_record-* (tfds build, array_record)'


def load_tfds(
  data_dir: str | os.PathLike, name: str, split: str
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
  """Reads every example of a prepared tfds split.

  Args:
    data_dir: the tfds data dir (the one passed to `tfds build --data_dir`).
    name: `cifar10` or `cifar100` (fine labels).
    split: `train` or `test`.

  Returns:
    images uint8 [N, 32, 32, 3], labels int32 [N], class names.

  Raises:
    ImportError: tensorflow-datasets (or its undeclared importlib_resources) is absent.
    FileNotFoundError: no prepared array_record data (checked before tfds runs).
  """
  if prepared_dir(data_dir, name, split) is None:
    raise FileNotFoundError(describe_missing(data_dir, name, split))
  return read_data_source(data_dir, name, split)


def read_data_source(
  data_dir: str | os.PathLike, name: str, split: str
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
  """`tfds.data_source` → arrays; call only once the prepared data is known to exist."""
  import tensorflow_datasets as tfds  # Heavy: imported only for this source.

  source = tfds.data_source(
    TFDS_NAMES[name], split=split, data_dir=os.fspath(data_dir), download=False
  )
  count = len(source)
  images = np.zeros((count, 32, 32, 3), np.uint8)
  labels = np.zeros((count,), np.int32)
  for i in range(count):
    example = source[i]
    images[i] = np.asarray(example['image'], np.uint8)
    labels[i] = int(example['label'])
  label_feature = source.dataset_info.features['label']
  return images, labels, tuple(str(n) for n in label_feature.names)

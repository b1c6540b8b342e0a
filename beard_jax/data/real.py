"""Loads the real datasets (CIFAR-10, CIFAR-100, Tiny-ImageNet) as uint8 NHWC arrays.

`load_real_dataset(name, split, data_dir)` returns an `ImageSet`. It reads one
of these sources under `data_dir` (`source='auto'` tries them in this order):

  `npz`: `<data_dir>/<name>/<split>.npz` with `images` uint8 [N, H, W, 3] (RGB,
      0..255) and integer `labels` [N], optionally `class_names` (str [K]).
      `<name>` is the canonical name (`cifar10`, `cifar100`, `tinyimagenet`).
      Also accepted: for Tiny-ImageNet's test split `val.npz`; and when
      `<split>.npz` is absent, exactly one `<split>_*.npz` (for example
      `cifar10/train_1k_per_class.npz` of the shared data), which may be a
      SUBSET of the split: a warning says which file was used.
  `cifar_python`: the official CIFAR pickle folders `cifar-10-batches-py/` and
      `cifar-100-python/` in `<data_dir>` or `<data_dir>/<name>/`, read without
      running pickled code (see `cifar_files`). CIFAR-100 uses fine labels.
  `tiny_imagenet_folder`: the official `tiny-imagenet-200/` folder in
      `<data_dir>` or `<data_dir>/tinyimagenet/` (see `tiny_imagenet`); `test` is
      the official validation set; class index = line in `wnids.txt` unless
      `class_order='sorted'`. Optional `cache_dir` keeps decoded arrays.
  `tfds`: CIFAR prepared by tensorflow-datasets in `<data_dir>/<name>/<version>/`
      (array_record), read by `tfds.data_source` only after checking that the
      files exist, never downloading (see `tfds_source`).

`data_dir=None` means `$BEARD_DATA_DIR`, or `./data` when that is unset.

Example:
  test = load_real_dataset('cifar10', 'test', '/data')
  test.images.shape  # (10000, 32, 32, 3) uint8
"""

from __future__ import annotations

import os
import pathlib
import warnings
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from beard_jax.data import cifar_files, specs, tfds_source, tiny_imagenet

SPLITS = ('train', 'test')


class ImageSet(NamedTuple):
  """A labelled set of real images.

  Attributes:
    images: uint8 [N, H, W, 3], RGB, 0..255 (NHWC, not normalised).
    labels: int32 [N] in [0, K).
    class_names: the K class names (CIFAR names; Tiny-ImageNet wnids), in label order.
  """

  images: np.ndarray
  labels: np.ndarray
  class_names: tuple[str, ...]


class _NotServed(Exception):
  """The source does not provide this dataset at all (e.g. tfds and Tiny-ImageNet)."""


class _Missing(FileNotFoundError):
  """The source's files are absent (the message names where it looked); try the next one.

  A FileNotFoundError raised while reading a source that IS present (a missing
  batch or image) is an error and propagates.
  """


# ----------------------------------------------------------------------------- sources


def _npz_candidates(root: pathlib.Path, name: str, split: str) -> list[pathlib.Path]:
  folder = root / name
  exact = [folder / f'{split}.npz']
  if name == 'tinyimagenet' and split == 'test':
    exact.append(folder / 'val.npz')
  return exact


def _from_npz(root, name, split, class_order, cache_dir):
  del cache_dir
  candidates = _npz_candidates(root, name, split)
  found = [p for p in candidates if p.is_file()]
  if not found:
    partial = sorted((root / name).glob(f'{split}_*.npz'))
    if len(partial) > 1:
      raise ValueError(f'several candidate {split} files, pass one explicitly: {partial}')
    if not partial:
      raise _Missing(
        ' or '.join(str(p) for p in candidates) + f' (or one {root / name}/{split}_*.npz)'
      )
    warnings.warn(
      f'no {split}.npz for {name}: using {partial[0]}, which may hold only part of the split',
      stacklevel=3,
    )
    found = partial
  path = found[0]
  with np.load(path, allow_pickle=False) as archive:
    missing = [k for k in ('images', 'labels') if k not in archive.files]
    if missing:
      raise ValueError(f'{path}: missing arrays {missing}; found {archive.files}')
    images, labels = archive['images'], archive['labels']
    names = archive['class_names'] if 'class_names' in archive.files else None
  spec = specs.get_dataset_spec(name)
  if names is None:
    names = _default_class_names(name, spec.num_classes)
  names = tuple(str(n) for n in np.asarray(names).reshape(-1))
  if name == 'tinyimagenet' and class_order == 'sorted':
    if names == _default_class_names(name, spec.num_classes):
      raise ValueError(f'{path} has no class_names (wnids): cannot reorder classes to sorted')
    order = np.argsort(np.array(names))  # order[new] = old
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    labels = rank[np.asarray(labels, np.int64)] if labels.size else labels
    names = tuple(sorted(names))
  return images, labels, names


def _default_class_names(name: str, num_classes: int) -> tuple[str, ...]:
  if name == 'cifar10':
    return cifar_files.CIFAR10_CLASSES
  if name == 'cifar100':
    return cifar_files.CIFAR100_CLASSES
  return tuple(f'class_{i:03d}' for i in range(num_classes))


def _from_cifar_python(root, name, split, class_order, cache_dir):
  del class_order, cache_dir
  if name not in ('cifar10', 'cifar100'):
    raise _NotServed
  candidates = cifar_files.candidate_dirs(root, name)
  for directory in candidates:
    if directory.is_dir():
      return cifar_files.load_cifar_python(directory, name, split)
  raise _Missing(' or '.join(f'{d}/' for d in candidates))


def _from_tiny_imagenet_folder(root, name, split, class_order, cache_dir):
  if name != 'tinyimagenet':
    raise _NotServed
  candidates = tiny_imagenet.candidate_dirs(root)
  for directory in candidates:
    if (directory / 'wnids.txt').is_file():
      return tiny_imagenet.load_tiny_imagenet(directory, split, class_order, cache_dir)
  raise _Missing(' or '.join(f'{d}/wnids.txt' for d in candidates))


def _from_tfds(root, name, split, class_order, cache_dir):
  del class_order, cache_dir
  if name not in tfds_source.TFDS_NAMES:
    raise _NotServed
  if tfds_source.prepared_dir(root, name, split) is None:
    raise _Missing(tfds_source.describe_missing(root, name, split))
  return tfds_source.read_data_source(root, name, split)


_Source = Callable[..., tuple[np.ndarray, np.ndarray, tuple[str, ...]]]
SOURCES: dict[str, _Source] = {
  'npz': _from_npz,
  'cifar_python': _from_cifar_python,
  'tiny_imagenet_folder': _from_tiny_imagenet_folder,
  'tfds': _from_tfds,
}

_HOW_TO_SUPPLY = {
  'cifar10': 'unpack cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html) '
  'into data_dir, write data_dir/cifar10/<split>.npz, or `tfds build cifar10 '
  '--data_dir=<data_dir> --file_format=array_record`',
  'cifar100': 'unpack cifar-100-python.tar.gz into data_dir, write '
  'data_dir/cifar100/<split>.npz, or `tfds build cifar100 --data_dir=<data_dir> '
  '--file_format=array_record`',
  'tinyimagenet': 'unzip tiny-imagenet-200.zip (http://cs231n.stanford.edu/tiny-imagenet-200.zip) '
  'into data_dir or write data_dir/tinyimagenet/<split>.npz',
}


# ----------------------------------------------------------------------------- API


def _validate(images, labels, class_names, spec: specs.DatasetSpec, origin: str) -> ImageSet:
  """Checks dtype, shape and label range; returns the canonical `ImageSet`."""
  images = np.asarray(images)
  labels = np.asarray(labels)
  expected_shape = (spec.image_size, spec.image_size, spec.channels)
  if images.ndim != 4 or images.shape[1:] != expected_shape:
    raise ValueError(
      f'{origin}: expected images [N, {", ".join(map(str, expected_shape))}] (NHWC) for '
      f'{spec.name}, found shape {images.shape}'
    )
  if images.dtype != np.uint8:
    raise ValueError(f'{origin}: expected uint8 images (0..255), found {images.dtype}')
  if labels.shape != (images.shape[0],):
    raise ValueError(
      f'{origin}: expected labels [{images.shape[0]}] (one per image), found {labels.shape}'
    )
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f'{origin}: expected integer labels, found {labels.dtype}')
  if labels.size and (labels.min() < 0 or labels.max() >= spec.num_classes):
    raise ValueError(
      f'{origin}: labels must lie in [0, {spec.num_classes}) for {spec.name}, '
      f'found [{labels.min()}, {labels.max()}]'
    )
  if len(class_names) != spec.num_classes:
    raise ValueError(f'{origin}: expected {spec.num_classes} class names, found {len(class_names)}')
  return ImageSet(np.ascontiguousarray(images), labels.astype(np.int32), tuple(class_names))


def get_source(source: str) -> _Source:
  """Returns the reader registered as `source`."""
  if source not in SOURCES:
    raise ValueError(f'unknown source {source!r}; choose from {["auto", *SOURCES]}')
  return SOURCES[source]


def load_real_dataset(
  name: str,
  split: str,
  data_dir: str | os.PathLike | None = None,
  source: str = 'auto',
  *,
  class_order: str = 'wnids',
  cache_dir: str | os.PathLike | None = None,
) -> ImageSet:
  """Loads one split of a real dataset from whichever source has it.

  Args:
    name: `cifar10`, `cifar100` or `tinyimagenet` (any alias that
      `specs.canonical_dataset_name` accepts, e.g. `CIFAR10`, `tiny-imagenet`).
    split: `train` or `test` (Tiny-ImageNet: the official validation set).
    data_dir: the folder holding the data (layouts in the module docstring);
      None means `$BEARD_DATA_DIR`, else `./data`.
    source: `auto` (try `npz`, `cifar_python`, `tiny_imagenet_folder`, `tfds`
      in that order) or one of those names.
    class_order: Tiny-ImageNet only: `wnids` (line in wnids.txt) or `sorted`.
    cache_dir: Tiny-ImageNet folder source only: where to cache decoded arrays.

  Returns:
    An `ImageSet`: images uint8 [N, H, W, 3] RGB 0..255, labels int32 [N] in [0, K),
    the K class names.

  Raises:
    FileNotFoundError: no source has the data; the one-line message lists every
      place looked at and how to supply the data.
    ValueError: unknown name/split/source, or a file whose shape, dtype or
      labels do not fit the dataset (the message says what was expected).
    beard_jax.io.torch_files.UnsafeFileError: a CIFAR pickle asks to run code.
  """
  name = specs.canonical_dataset_name(name)
  spec = specs.get_dataset_spec(name)
  if split not in SPLITS:
    raise ValueError(f'unknown split {split!r}; choose from {list(SPLITS)}')
  if class_order not in tiny_imagenet.CLASS_ORDERS:
    raise ValueError(
      f'unknown class_order {class_order!r}; choose from {list(tiny_imagenet.CLASS_ORDERS)}'
    )
  if data_dir is None:
    data_dir = os.environ.get('BEARD_DATA_DIR', 'data')
  root = pathlib.Path(data_dir)
  names = list(SOURCES) if source == 'auto' else [source]
  looked_at = []
  for source_name in names:
    reader = get_source(source_name)
    try:
      images, labels, class_names = reader(root, name, split, class_order, cache_dir)
    except _NotServed:
      looked_at.append(f'{source_name}: does not provide {name}')
      continue
    except _Missing as e:
      looked_at.append(f'{source_name}: {e.args[0] if e.args else e}')
      continue
    return _validate(images, labels, class_names, spec, f'{name}/{split} from {source_name}')
  raise FileNotFoundError(
    f'no {name} {split} data under {root.resolve()} (looked at {"; ".join(looked_at)}); '
    f'to supply it: {_HOW_TO_SUPPLY[name]}'
  )

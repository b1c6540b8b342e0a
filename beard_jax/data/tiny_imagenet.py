"""Reads Tiny-ImageNet from its official `tiny-imagenet-200/` folder.

The layout (CS231n's `tiny-imagenet-200.zip`):

  tiny-imagenet-200/wnids.txt                     200 WordNet ids, one a line
  tiny-imagenet-200/train/<wnid>/images/*.JPEG    training images (500 per class)
  tiny-imagenet-200/val/val_annotations.txt       `<file>\\t<wnid>\\t<box…>` per line
  tiny-imagenet-200/val/images/val_<i>.JPEG       the 10,000 validation images

The `test` split is the official validation set (the official test set has no
labels), as in BEARD and the dataset-distillation literature. Class order:

  * `'wnids'` (default): class index = line number in `wnids.txt`;
  * `'sorted'`: class index = position of the wnid in sorted order, the order of
    `torchvision.datasets.ImageFolder`, which many distillation codebases use.

Training images are listed class by class in class order, each class by the
number in its file name; validation images keep the annotation file's order.
Pillow decodes the JPEGs; grayscale (and CMYK) images become RGB by copying
channels. Decoding 10,000 images takes seconds; pass `cache_dir` to keep the
decoded arrays in `<cache_dir>/tinyimagenet_<split>_<order>.npz`, which is
rebuilt when the folder's file list changes. Internal to `beard_jax.data.real`.
"""

from __future__ import annotations

import hashlib
import io
import os
import pathlib
import re

import numpy as np

from beard_jax.io import atomic

FOLDER = 'tiny-imagenet-200'
IMAGE_SIZE = 64
CLASS_ORDERS = ('wnids', 'sorted')


def candidate_dirs(data_dir: str | os.PathLike) -> list[pathlib.Path]:
  """Where the folder may sit: `data_dir/tiny-imagenet-200`, `data_dir/tinyimagenet/tiny-…`."""
  root = pathlib.Path(data_dir)
  return [root / FOLDER, root / 'tinyimagenet' / FOLDER]


def read_wnids(directory: pathlib.Path, class_order: str) -> tuple[str, ...]:
  """The class wnids in class-index order (see the module docstring)."""
  if class_order not in CLASS_ORDERS:
    raise ValueError(f'unknown class_order {class_order!r}; choose from {list(CLASS_ORDERS)}')
  path = directory / 'wnids.txt'
  wnids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
  if len(wnids) != 200 or len(set(wnids)) != 200:
    raise ValueError(f'{path}: expected 200 distinct wnids, found {len(set(wnids))}')
  return tuple(sorted(wnids)) if class_order == 'sorted' else tuple(wnids)


def _number(path: pathlib.Path) -> int:
  match = re.search(r'(\d+)$', path.stem)
  return int(match.group(1)) if match else -1


def _list_files(directory: pathlib.Path, split: str, wnids: tuple[str, ...]):
  """Returns [(path, wnid)] of the split, in the documented order."""
  if split == 'train':
    files = []
    for wnid in wnids:
      paths = sorted((directory / 'train' / wnid / 'images').glob('*.JPEG'), key=_number)
      if not paths:
        raise FileNotFoundError(f'{directory}/train/{wnid}/images holds no .JPEG file')
      files.extend((p, wnid) for p in paths)
    return files
  annotations = directory / 'val' / 'val_annotations.txt'
  files = []
  for line_number, line in enumerate(annotations.read_text().splitlines(), 1):
    fields = line.split('\t')
    if len(fields) < 2:
      raise ValueError(f'{annotations}:{line_number}: expected `<file>\\t<wnid>…`, found {line!r}')
    files.append((directory / 'val' / 'images' / fields[0], fields[1]))
  return files


def _decode(path: pathlib.Path) -> np.ndarray:
  from PIL import Image  # Only this source needs Pillow.

  with Image.open(path) as image:
    rgb = np.asarray(image.convert('RGB'), dtype=np.uint8)
  if rgb.shape != (IMAGE_SIZE, IMAGE_SIZE, 3):
    raise ValueError(f'{path}: expected a {IMAGE_SIZE}×{IMAGE_SIZE} image, found {rgb.shape}')
  return rgb


def _fingerprint(directory: pathlib.Path, files, wnids) -> str:
  digest = hashlib.sha256('\n'.join(wnids).encode())
  for path, wnid in files:
    digest.update(f'{path.relative_to(directory)}\t{wnid}\t{path.stat().st_size}\n'.encode())
  return digest.hexdigest()


def load_tiny_imagenet(
  directory: str | os.PathLike,
  split: str,
  class_order: str = 'wnids',
  cache_dir: str | os.PathLike | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
  """Reads one split of the official Tiny-ImageNet folder.

  Args:
    directory: the `tiny-imagenet-200` folder.
    split: `train` or `test` (the official validation set).
    class_order: `'wnids'` (line number in wnids.txt) or `'sorted'` (sorted wnids).
    cache_dir: optional folder for a decoded `.npz` cache; None decodes every time.

  Returns:
    images uint8 [N, 64, 64, 3] RGB in 0..255, labels int32 [N] in [0, 200),
    class names: the wnids in class-index order.

  Raises:
    FileNotFoundError: wnids.txt, the annotations or an image file is missing.
    ValueError: an unknown wnid, a malformed line or an image that is not 64×64.
  """
  directory = pathlib.Path(directory)
  for required in ('wnids.txt', 'val/val_annotations.txt' if split == 'test' else 'train'):
    if not (directory / required).exists():
      raise FileNotFoundError(f'{directory} lacks {required}')
  wnids = read_wnids(directory, class_order)
  index = {wnid: i for i, wnid in enumerate(wnids)}
  files = _list_files(directory, split, wnids)
  unknown = sorted({wnid for _, wnid in files if wnid not in index})
  if unknown:
    raise ValueError(f'{directory}: {split} files name wnids missing from wnids.txt: {unknown[:5]}')
  fingerprint = _fingerprint(directory, files, wnids) if cache_dir is not None else ''
  cache = pathlib.Path(cache_dir or '.') / f'tinyimagenet_{split}_{class_order}.npz'
  if cache_dir is not None and cache.is_file():
    with np.load(cache, allow_pickle=False) as cached:
      if str(cached['fingerprint']) == fingerprint:
        return cached['images'], cached['labels'], tuple(str(n) for n in cached['class_names'])
  images = np.stack([_decode(path) for path, _ in files]) if files else np.zeros((0, 64, 64, 3))
  labels = np.array([index[wnid] for _, wnid in files], dtype=np.int32)
  if cache_dir is not None:
    buffer = io.BytesIO()
    np.savez(
      buffer,
      images=images,
      labels=labels,
      class_names=np.array(wnids),
      fingerprint=np.array(fingerprint),
    )
    atomic.atomic_write_bytes(cache, buffer.getvalue())
  return images.astype(np.uint8), labels, wnids

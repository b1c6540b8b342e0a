"""Loads distilled datasets (BEARD's "dataset pool") as pixel-scale NHWC arrays.

Accepted files (`load_distilled_set`):

  * DC/DSA/DM/IDM/BACON/BEARD `.pt`: `torch.save({'data': [[images, labels], ...],
    ...})` with images float32 [N, C, H, W] mean/std-NORMALISED and labels int64
    [N] (hard) or float [N, K] (soft); one pair per independent distillation
    ("experiment"; BEARD uses experiment 0). Images that cannot be normalised are
    refused: integer images (uint8 pixels, say) and float images that look like
    0..255 pixels (all values in [0, 255], maximum above 10; normalised pixels
    stay within about ±3). Float pixels in [0, 1] look like normalised data and
    cannot be caught: store pixel-scale sets as `.npz`.
  * MTT: `images_best.pt` and `labels_best.pt`, a bare tensor each (images
    normalised NCHW as above); `path` may be either file or the folder holding
    both. (MTT runs with ZCA whitening store whitened images, which mean/std
    cannot undo: load those only with a matching ZCA step of your own.)
  * `.npz` with `images` in PIXEL scale NHWC, either uint8 0..255 or float
    (about [0, 1]), and `labels` int [N] or float [N, K]. Not normalised. Float
    images that look like 0..255 pixels (as above) are refused.

Every `.pt` is read by `beard_jax.io.torch_files.load_torch_file`, which runs no
pickled code. BACON and IDM store factorised "4-in-1" images (PROTOCOL.md §3):
`factorized=True` (the default for those two methods only) splits every image
into its four quadrants, upsamples each ×2 bilinearly (half-pixel centres, the
`align_corners=False` of PyTorch) and repeats the labels; the order follows the
reference decoder: all top-left quadrants first, then top-right, bottom-left,
bottom-right, labels tiled four times.

Pool layouts (`find_dataset_pool(pool_dir, dataset, ipc)`), each in `pool_dir`
or in `pool_dir/<METHOD>/`; method, dataset and IPC are read from the names,
case-insensitively, dataset through `specs.canonical_dataset_name`:

  * `res_<METHOD>_<DATASET>_ConvNet_<IPC>ipc*.pt`, e.g.
    `DC/res_DC_CIFAR10_ConvNet_10ipc_3000.pt` (the DC/DSA/DM convention);
  * a folder `<METHOD>_<DATASET>_<IPC>ipc*/` holding `images_best.pt` and
    `labels_best.pt` (MTT);
  * `<METHOD>_<DATASET>_<IPC>ipc*.npz`.
"""

from __future__ import annotations

import os
import pathlib
import re
import zipfile
from typing import NamedTuple

import numpy as np

from beard_jax.data import specs
from beard_jax.io import torch_files

METHODS = ('DC', 'DSA', 'DM', 'MTT', 'IDM', 'BACON')
FACTORIZED_METHODS = ('BACON', 'IDM')
MTT_FILES = ('images_best.pt', 'labels_best.pt')
_RES_PATTERN = re.compile(r'^res_([A-Za-z0-9]+)_([A-Za-z0-9-]+)_ConvNet_(\d+)ipc.*\.pt$', re.I)
_NAMED_PATTERN = re.compile(r'^([A-Za-z0-9]+)_([A-Za-z0-9-]+)_(\d+)ipc[^/]*?(\.npz)?$', re.I)


class DistilledSet(NamedTuple):
  """One distilled dataset, ready to train on.

  Attributes:
    images: float32 [N, H, W, C] in PIXEL scale: the file's normalisation is
      undone (x·std + mean) and nothing is clipped, so distilled pixels may lie
      well outside [0, 1] (the real DC CIFAR-10 sets span about [-1.2, 2.1]).
    labels: int32 [N] in [0, K) (hard), or float32 [N, K] (soft).
    method: upper-case method name (`DC`, `MTT`, …) or None when unknown.
    dataset: canonical dataset name.
    ipc: images per class as stored, before any factorised split (N_stored / K).
    source: the path read (and the experiment index, for `res_*.pt` files).
  """

  images: np.ndarray
  labels: np.ndarray
  method: str | None
  dataset: str
  ipc: int
  source: str


def infer_method(path: pathlib.Path) -> str | None:
  """The method a pool file or folder name gives (`res_DM_...pt` → DM), None if none does."""
  for candidate in (path.name, path.parent.name if path.is_file() else path.name):
    for pattern in (_RES_PATTERN, _NAMED_PATTERN):
      match = pattern.match(candidate)
      if match:
        return match.group(1).upper()
  if path.name in MTT_FILES or (path.is_dir() and (path / MTT_FILES[0]).is_file()):
    return 'MTT'
  folder = path.parent.name.upper() if path.is_file() else path.name.upper()
  return folder if folder in METHODS else None


def _read_pt_pair(path: pathlib.Path, experiment: int) -> tuple[np.ndarray, np.ndarray, str]:
  """The normalised NCHW images and labels of a `.pt` dataset file or an MTT folder."""
  if path.is_dir() or path.name in MTT_FILES:
    folder = path if path.is_dir() else path.parent
    missing = [f for f in MTT_FILES if not (folder / f).is_file()]
    if missing:
      raise FileNotFoundError(f'{folder}: an MTT set needs {list(MTT_FILES)}, missing {missing}')
    if experiment != 0:
      raise ValueError(f'{folder}: an MTT set holds one experiment (index 0), not {experiment}')
    images, labels = (torch_files.load_torch_file(folder / f) for f in MTT_FILES)
    return images, labels, str(folder)
  content = torch_files.load_torch_file(path)
  if not isinstance(content, dict) or 'data' not in content:
    found = sorted(content, key=str) if isinstance(content, dict) else type(content).__name__
    raise ValueError(f"{path}: expected a dict with key 'data' (a list of pairs), found {found}")
  pairs = content['data']
  if not isinstance(pairs, list | tuple) or not pairs:
    raise ValueError(f"{path}: 'data' should be a non-empty list of [images, labels] pairs")
  if not 0 <= experiment < len(pairs):
    raise ValueError(
      f'{path}: experiment {experiment} is out of range; the file holds {len(pairs)} '
      f'experiments (0..{len(pairs) - 1})'
    )
  pair = pairs[experiment]
  if not isinstance(pair, list | tuple) or len(pair) != 2:
    raise ValueError(f'{path}: data[{experiment}] should be an [images, labels] pair')
  return pair[0], pair[1], f'{path}#{experiment}'


def _read_npz_pair(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
  """The `images` and `labels` arrays of an `.npz` (no pickled objects); errors name the file."""
  try:
    with np.load(path, allow_pickle=False) as archive:
      files = list(archive.files)
      arrays = {k: archive[k] for k in ('images', 'labels') if k in files}
  except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
    raise ValueError(f'{path}: not a plain .npz of images and labels ({e})') from None
  missing = [k for k in ('images', 'labels') if k not in arrays]
  if missing:
    raise ValueError(f'{path}: missing arrays {missing}; found {files}')
  return arrays['images'], arrays['labels']


def _check_finite(images: np.ndarray, labels: np.ndarray, source: str) -> None:
  for what, array in (('images', images), ('labels', labels)):
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
      bad = int(np.size(array) - np.isfinite(array).sum())
      raise ValueError(f'{source}: {what} hold {bad} NaN or infinite values')


def _check_labels(labels: np.ndarray, count: int, num_classes: int, source: str) -> np.ndarray:
  """Validates hard [N] or soft [N, K] labels; returns int32 or float32."""
  if labels.shape[:1] != (count,):
    raise ValueError(
      f'{source}: {count} images but labels of shape {labels.shape}: the counts must match'
    )
  if labels.ndim == 2:
    if labels.shape[1] != num_classes or not np.issubdtype(labels.dtype, np.floating):
      raise ValueError(
        f'{source}: soft labels must be float [N, {num_classes}], found {labels.dtype} '
        f'{labels.shape}'
      )
    classes = labels.argmax(axis=1)
    labels = labels.astype(np.float32)
  elif labels.ndim == 1:
    if not np.issubdtype(labels.dtype, np.integer):
      raise ValueError(f'{source}: hard labels must be integers, found {labels.dtype}')
    if count and (labels.min() < 0 or labels.max() >= num_classes):
      raise ValueError(
        f'{source}: labels must lie in [0, {num_classes}), found [{labels.min()}, {labels.max()}]'
      )
    classes = labels = labels.astype(np.int32)
  else:
    raise ValueError(f'{source}: labels must be [N] or [N, K], found shape {labels.shape}')
  empty = np.flatnonzero(np.bincount(classes, minlength=num_classes) == 0)
  if empty.size:
    raise ValueError(
      f'{source}: classes {empty.tolist()[:10]} have no image (of {num_classes}); a distilled '
      'set needs at least one image per class'
    )
  return labels


def _check_images(images: np.ndarray, spec: specs.DatasetSpec, layout: str, source: str) -> None:
  size, channels = spec.image_size, spec.channels
  expected = (channels, size, size) if layout == 'NCHW' else (size, size, channels)
  if images.ndim != 4 or images.shape[1:] != expected:
    dims = 'N, ' + ', '.join(map(str, expected))
    raise ValueError(
      f'{source}: expected {layout} images [{dims}] for {spec.name}, found shape {images.shape}'
    )
  if layout == 'NCHW' and not np.issubdtype(images.dtype, np.floating):
    integers = images.size and images.dtype.kind in 'biu'
    values = f' with values {images.min()}..{images.max()}' if integers else ''
    raise ValueError(
      f'{source}: a .pt distilled set holds float mean/std-normalised images; found '
      f'{images.dtype} images{values}. Save pixel images as .npz (uint8 0..255 or '
      'float [0, 1], NHWC) instead'
    )
  if not (np.issubdtype(images.dtype, np.floating) or images.dtype == np.uint8):
    raise ValueError(f'{source}: images must be float or uint8, found {images.dtype}')


def _check_float_scale(images: np.ndarray, layout: str, source: str) -> None:
  """Refuses float images that look like 0..255 pixels (module docstring).

  Args:
    images: finite, float [N, C, H, W] from a `.pt` (normalised) or [N, H, W, C]
      from an `.npz` (pixels in about [0, 1]); other dtypes pass.
    layout: `NCHW` (a `.pt`) or `NHWC` (an `.npz`).
    source: the file, for the message.
  """
  if not np.issubdtype(images.dtype, np.floating) or not images.size:
    return
  low, high = float(images.min()), float(images.max())
  if low >= 0 and 10 < high <= 255:
    normalised = 'mean/std-normalised images (about -2.5..2.8)'
    expected = normalised if layout == 'NCHW' else 'float pixels in about [0, 1]'
    raise ValueError(
      f'{source}: {images.dtype} images span {low:g}..{high:g}, like 0..255 pixels; '
      f'expected {expected}. Save 0..255 pixels as uint8 in an .npz'
    )


def upsample2x_bilinear(images: np.ndarray) -> np.ndarray:
  """×2 bilinear upsampling with half-pixel centres (PyTorch `align_corners=False`).

  Args:
    images: float [N, H, W, C].

  Returns:
    float32 [N, 2H, 2W, C]; output pixel 2k is 0.75·x[k] + 0.25·x[k-1], pixel
    2k+1 is 0.75·x[k] + 0.25·x[k+1], indices clamped at the borders.
  """
  out = np.asarray(images, np.float32)
  for axis in (1, 2):
    n = out.shape[axis]
    index = np.arange(n)
    previous = np.take(out, np.maximum(index - 1, 0), axis=axis)
    following = np.take(out, np.minimum(index + 1, n - 1), axis=axis)
    even = 0.75 * out + 0.25 * previous
    odd = 0.75 * out + 0.25 * following
    out = np.stack([even, odd], axis=axis + 1).reshape(
      out.shape[:axis] + (2 * n,) + out.shape[axis + 1 :]
    )
  return out


def factorize_4in1(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The BACON/IDM "4-in-1" split of [N, H, W, C] images into [4N, H, W, C].

  Args:
    images: float [N, H, W, C], H and W even.
    labels: [N] or [N, K].

  Returns:
    images float32 [4N, H, W, C] (quadrant q of image i at row q·N + i, quadrants in
    the order top-left, top-right, bottom-left, bottom-right), labels tiled 4×.
  """
  _, height, width, _ = images.shape
  if height % 2 or width % 2:
    raise ValueError(f'4-in-1 factorisation needs even image sides, found {height}×{width}')
  h, w = height // 2, width // 2
  quadrants = [images[:, i * h : (i + 1) * h, j * w : (j + 1) * w] for i in (0, 1) for j in (0, 1)]
  decoded = upsample2x_bilinear(np.concatenate(quadrants))
  return decoded, np.concatenate([labels] * 4)


def load_distilled_set(
  path: str | os.PathLike,
  dataset: str,
  *,
  method: str | None = None,
  experiment: int = 0,
  factorized: bool | None = None,
) -> DistilledSet:
  """Loads one distilled set in pixel scale (layouts in the module docstring).

  Args:
    path: a `.pt` dataset file, an MTT `images_best.pt`/`labels_best.pt` (or their
      folder), or a `.npz`.
    dataset: `cifar10`, `cifar100` or `tinyimagenet` (aliases accepted); gives the
      shape, class count and the mean/std that `.pt` images are normalised with.
    method: the method name; None infers it from the file or folder name.
    experiment: which `[images, labels]` pair of a `.pt` file (0 in BEARD).
    factorized: apply the 4-in-1 split; None means yes for BACON and IDM only.

  Returns:
    A `DistilledSet`: images float32 [N, H, W, C] pixel scale (not clipped),
    labels int32 [N] or float32 [N, K].

  Raises:
    FileNotFoundError: the file (or one of the MTT pair) is missing.
    beard_jax.io.torch_files.UnsafeFileError: the file asks to run code.
    ValueError: NaN/inf values, a shape that does not fit the dataset, images whose
      type or range contradicts the file's scale (integer images in a `.pt`, 0..255
      floats anywhere), labels out of range, an empty class, mismatched counts or
      an out-of-range experiment.
  """
  path = pathlib.Path(path)
  spec = specs.get_dataset_spec(dataset)
  if not path.exists():
    raise FileNotFoundError(f'no distilled set at {path}')
  method = method.upper() if method else infer_method(path)
  if path.suffix == '.npz':
    if experiment != 0:
      raise ValueError(f'{path}: an .npz holds one experiment (index 0), not {experiment}')
    images, labels = _read_npz_pair(path)
    source, layout = str(path), 'NHWC'
  else:
    images, labels, source = _read_pt_pair(path, experiment)
    layout = 'NCHW'
  for what, value in (('images', images), ('labels', labels)):
    if not isinstance(value, np.ndarray):
      raise ValueError(f'{source}: {what} should be a tensor, found {type(value).__name__}')
  _check_images(images, spec, layout, source)
  _check_finite(images, labels, source)
  _check_float_scale(images, layout, source)
  labels = _check_labels(labels, images.shape[0], spec.num_classes, source)
  if layout == 'NCHW':  # Normalised NCHW -> pixel-scale NHWC.
    mean, std = np.asarray(spec.mean, np.float32), np.asarray(spec.std, np.float32)
    pixels = images.astype(np.float32).transpose(0, 2, 3, 1) * std + mean
  elif images.dtype == np.uint8:
    pixels = images.astype(np.float32) / 255.0
  else:
    pixels = images.astype(np.float32)
  ipc = images.shape[0] // spec.num_classes
  if factorized is None:
    factorized = method in FACTORIZED_METHODS
  if factorized:
    pixels, labels = factorize_4in1(pixels, labels)
  return DistilledSet(np.ascontiguousarray(pixels), labels, method, spec.name, ipc, source)


def _pool_entry(entry: pathlib.Path, dataset: str, ipc: int) -> str | None:
  """The method of a pool file/folder that matches `dataset` and `ipc`, else None."""
  if entry.is_file() and entry.suffix == '.pt':
    match = _RES_PATTERN.match(entry.name)
  elif entry.is_file() and entry.suffix == '.npz':
    match = _NAMED_PATTERN.match(entry.name)
  elif entry.is_dir() and all((entry / f).is_file() for f in MTT_FILES):
    match = _NAMED_PATTERN.match(entry.name)
  else:
    return None
  if not match or int(match.group(3)) != ipc:
    return None
  try:
    if specs.canonical_dataset_name(match.group(2)) != dataset:
      return None
  except ValueError:
    return None
  return match.group(1).upper()


def find_dataset_pool(
  pool_dir: str | os.PathLike, dataset: str, ipc: int
) -> dict[str, pathlib.Path]:
  """Discovers the distilled sets of one dataset and IPC in a pool folder.

  Args:
    pool_dir: the pool root; files may sit in it or in `pool_dir/<METHOD>/`.
    dataset: the dataset (aliases accepted).
    ipc: images per class.

  Returns:
    {method (upper case): path}, sorted by method, for `load_distilled_set`.

  Raises:
    FileNotFoundError: `pool_dir` is not a folder.
    ValueError: two entries claim the same method (the message names both).
  """
  root = pathlib.Path(pool_dir)
  if not root.is_dir():
    raise FileNotFoundError(f'no dataset pool folder {root}')
  dataset = specs.canonical_dataset_name(dataset)
  entries = sorted(root.iterdir())
  for sub in [e for e in entries if e.is_dir() and not _NAMED_PATTERN.match(e.name)]:
    entries.extend(sorted(sub.iterdir()))
  found: dict[str, pathlib.Path] = {}
  for entry in entries:
    method = _pool_entry(entry, dataset, ipc)
    if method is None:
      continue
    if method in found:
      raise ValueError(
        f'two {method} sets for {dataset} at IPC {ipc}: {found[method]} and {entry}; keep one'
      )
    found[method] = entry
  return dict(sorted(found.items()))

"""Tensors rebuilt from the storages of one torch file, within a budget of bytes.

Stands in for what `torch.save` pickles about tensors: the typed storages
(`torch.FloatStorage` & co., `_StorageType`) and `torch._utils._rebuild_tensor_v2`
(`Tensors.rebuild`). Guarantees, for each tensor a file declares:

  * its size and stride are at most 64 non-negative ints, one stride per
    dimension, and its view (offset, size, stride) lies inside its storage;
  * it becomes a C-contiguous `numpy.ndarray` that owns its memory, of the
    storage's numeric dtype;
  * the bytes it allocates are booked against the file's `Allowance`, which
    caps what one file may make the reader allocate in all and how far stride-0
    or overlapping views may repeat stored elements; a refused tensor allocates
    nothing.
"""

from __future__ import annotations

import math
from typing import Any

import ml_dtypes
import numpy as np

from beard_jax.io.file_errors import TorchFileError, describe

MAX_DIMS = 64  # numpy's limit on array dimensions.
MAX_ELEMENTS_BYTES = 2**62  # no array of more bytes than this can exist.

STORAGE_DTYPES = {
  'DoubleStorage': np.float64,
  'FloatStorage': np.float32,
  'HalfStorage': np.float16,
  'LongStorage': np.int64,
  'IntStorage': np.int32,
  'ShortStorage': np.int16,
  'CharStorage': np.int8,
  'ByteStorage': np.uint8,
  'BoolStorage': np.bool_,
  'BFloat16Storage': ml_dtypes.bfloat16,
  'ComplexFloatStorage': np.complex64,
  'ComplexDoubleStorage': np.complex128,
}


class StorageType:
  """Stands in for `torch.FloatStorage` & co.: only carries the dtype."""

  __slots__ = ('name', 'dtype')

  def __init__(self, name: str):
    self.name = name
    self.dtype = np.dtype(STORAGE_DTYPES[name])

  def __repr__(self):
    return f'torch.{self.name}'


class Allowance:
  """What reading one file may still allocate, and repeat through broadcast views.

  Args:
    max_bytes: bytes the file may make the reader allocate in all
      (`torch_files.MAX_MATERIALISED_BYTES`).
    max_broadcast_bytes: bytes by which its tensors may exceed their storages in
      all (`torch_files.MAX_BROADCAST_BYTES`).
  """

  def __init__(self, max_bytes: int, max_broadcast_bytes: int):
    self.max_bytes, self.max_broadcast_bytes = max_bytes, max_broadcast_bytes
    self.bytes_left = max_bytes
    self.broadcast_left = max_broadcast_bytes

  def spend(self, nbytes: int, what: str, broadcast_bytes: int = 0) -> None:
    """Books `nbytes` (of which `broadcast_bytes` repeat stored ones) or refuses them."""
    if nbytes > self.bytes_left:
      raise TorchFileError(
        f'{what} needs {nbytes:,} bytes, more than the {self.bytes_left:,} left of the '
        f'{self.max_bytes:,} one file may make this reader allocate '
        '(torch_files.MAX_MATERIALISED_BYTES)'
      )
    if broadcast_bytes > self.broadcast_left:
      raise TorchFileError(
        f'{what} repeats stored elements (a stride-0 or overlapping view) into {nbytes:,} '
        f'bytes, {broadcast_bytes:,} more than its storage holds; a file may expand its '
        f'tensors by {self.max_broadcast_bytes:,} bytes in all (torch_files.MAX_BROADCAST_BYTES)'
      )
    self.bytes_left -= nbytes
    self.broadcast_left -= broadcast_bytes


def dims(values: Any, what: str) -> tuple[int, ...]:
  """A tensor's size or stride as read from a pickle: at most 64 non-negative ints."""
  if not (
    isinstance(values, tuple | list)
    and len(values) <= MAX_DIMS
    and all(type(v) is int and 0 <= v < MAX_ELEMENTS_BYTES for v in values)
  ):
    raise TorchFileError(
      f'a tensor {what} is {describe(values)}; expected at most {MAX_DIMS} non-negative ints'
    )
  return tuple(values)


class PendingStorage:
  """A legacy storage whose bytes follow the pickle; tensors built on it wait."""

  def __init__(self, key: str):
    self.key = key


class PendingTensor:
  """A tensor on a `PendingStorage`: `(storage_offset, size, stride)` kept for later."""

  def __init__(self, storage: PendingStorage, layout: tuple):
    self.storage, self.layout = storage, layout


class Tensors:
  """Builds the tensors of one file within its `Allowance`."""

  def __init__(self, allowance: Allowance):
    self.allowance = allowance

  def rebuild(self, storage, storage_offset, size, stride, *unused_args):
    """`torch._utils._rebuild_tensor_v2` (and `_rebuild_tensor`)."""
    if isinstance(storage, PendingStorage):
      return PendingTensor(storage, (storage_offset, size, stride))
    return self.materialise(storage, storage_offset, size, stride)

  def materialise(self, storage: Any, storage_offset: Any, size: Any, stride: Any) -> np.ndarray:
    """A C-contiguous copy of the view (offset, size, stride) of a flat storage.

    Args:
      storage: the storage, [numel] of a numeric dtype.
      storage_offset, size, stride: the view, in elements, as the pickle gives them.

    Returns:
      An array of shape `size` that owns its memory.

    Raises:
      TorchFileError: a view outside the storage, or beyond the file's allowance.
    """
    if not isinstance(storage, np.ndarray) or storage.ndim != 1 or storage.dtype.hasobject:
      raise TorchFileError('a tensor refers to a storage that is not a flat array of numbers')
    size, stride = dims(size, 'size'), dims(stride, 'stride')
    if type(storage_offset) is not int or len(size) != len(stride):
      raise TorchFileError(
        f'a tensor has size {size}, stride {stride} and offset {describe(storage_offset)}; '
        'expected one stride per dimension and an int offset'
      )
    itemsize = storage.dtype.itemsize
    if math.prod(max(n, 1) for n in size) * itemsize > MAX_ELEMENTS_BYTES:
      raise TorchFileError(f'a tensor of size {size} is larger than any array can be')
    numel = math.prod(size)
    if numel == 0:
      return np.zeros(size, storage.dtype)
    end = storage_offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) + 1
    if storage_offset < 0 or end > storage.size:
      raise TorchFileError(
        f'a tensor of size {size}, stride {stride} and offset {storage_offset} '
        f'reads past the end of its storage of {storage.size:,} elements'
      )
    what = f'a tensor of size {size} and stride {stride}'
    beyond = max(0, numel - storage.size) * itemsize
    self.allowance.spend(numel * itemsize, what, broadcast_bytes=beyond)
    view = np.lib.stride_tricks.as_strided(
      storage[storage_offset:],
      shape=size,
      strides=tuple(s * itemsize for s in stride),
      writeable=False,
    )
    return np.array(view, order='C')  # A C-contiguous copy that owns its memory (not order K).


def rebuild_parameter(data, *unused_args):
  """`torch._utils._rebuild_parameter`: a Parameter is its data."""
  return data

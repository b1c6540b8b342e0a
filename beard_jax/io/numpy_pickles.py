"""numpy arrays, dtypes and scalars as numpy pickles them, rebuilt without trusting the file.

A pickled array is `_reconstruct(ndarray, (0,), b'b')` followed by a BUILD with
`(shape, dtype, fortran, data)`; a dtype is `dtype(code, align, copy)` followed
by a BUILD with its byte order; a scalar is `scalar(dtype, data)`. The stand-ins
here (`NUMPY_GLOBALS`, found under each of `NUMPY_MODULES`) and the checks of
the two BUILD states guarantee that:

  * `numpy.ndarray` itself is not callable, and `_reconstruct` creates only the
    empty array numpy writes, so a file cannot allocate an array it does not store;
  * an array's BUILD state carries exactly the items or bytes its shape and dtype
    need, its shape at most 64 non-negative ints;
  * dtypes are numeric (bool, int, uint, float, complex), without sub-arrays, a
    fresh copy whose state may set the byte order only;
  * a scalar is read from bytes of a dtype that holds no Python objects.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from beard_jax.io.file_errors import TorchFileError, UnsafeFileError, describe
from beard_jax.io.torch_tensors import dims

_NUMERIC_KINDS = 'biufc'  # numpy dtype kinds: bool, int, uint, float, complex.


class _NumpyArrayClass:
  """Stands in for `numpy.ndarray`: not callable, so a pickle cannot allocate an array."""

  def __repr__(self):
    return 'numpy.ndarray'


_NDARRAY = _NumpyArrayClass()


def _numpy_reconstruct(cls, shape, dtype_code):
  """`numpy.core.multiarray._reconstruct`: the empty array that a BUILD then fills.

  numpy always pickles `_reconstruct(ndarray, (0,), b'b')`; another shape would
  allocate memory that the file does not store, so it is refused.
  """
  if cls is not _NDARRAY:
    raise UnsafeFileError(f'numpy _reconstruct of {describe(cls)} is not allowed, only ndarray')
  if not (type(shape) is tuple and shape == (0,) and dtype_code in ('b', b'b')):
    raise TorchFileError(
      f'numpy _reconstruct declares shape {describe(shape)} and type {describe(dtype_code)}; '
      "numpy writes (0,) and 'b' and gives the array's shape and data in its state"
    )
  return np.ndarray((0,), np.int8)


def _numpy_dtype(code, align=False, copy=False):
  """`numpy.dtype(code, align, copy)` as numpy pickles it: a numeric type, a fresh copy.

  A copy, so that the BUILD that follows applies (numpy ignores state set on its
  shared built-in dtypes); numeric (bool, int, float, complex), because strings,
  records and objects are not what a torch file or a data batch holds.
  """
  if not isinstance(code, str | bytes) or len(code) > 16:
    raise TorchFileError(f'numpy dtype {describe(code)}; expected a type code such as f8')
  dtype = np.dtype(code.decode('latin1') if isinstance(code, bytes) else code, bool(align), True)
  if dtype.kind not in _NUMERIC_KINDS or dtype.shape:
    raise TorchFileError(f'numpy dtype {dtype}; only numeric dtypes are accepted')
  return dtype


def _numpy_scalar(dtype, data=None):
  """`numpy.core.multiarray.scalar(dtype, data)`: one value of `dtype` read from `data`."""
  if isinstance(data, str):  # A Python 2 pickle read with a text encoding.
    data = data.encode('latin1')
  if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
    raise UnsafeFileError(f'numpy scalar of {describe(dtype)} from {describe(data)}')
  return np.frombuffer(data, dtype=dtype, count=1)[0]


def check_array_state(state: Any) -> None:
  """Refuses an ndarray BUILD state whose data does not fill its declared shape."""
  if not isinstance(state, tuple) or len(state) not in (4, 5):
    raise TorchFileError(f'numpy array state {describe(state)}; expected (shape, dtype, …, data)')
  shape, dtype, _, data = state[-4:]
  count = math.prod(dims(shape, 'numpy array shape'))
  if not isinstance(dtype, np.dtype):
    raise TorchFileError(f'numpy array state with dtype {describe(dtype)}; expected a dtype')
  if dtype.hasobject:
    found, expected = (len(data) if isinstance(data, list) else None), count
  else:
    found = len(data) if isinstance(data, bytes | bytearray | str) else None
    expected = count * dtype.itemsize
  if found != expected:
    raise TorchFileError(
      f'a numpy array of shape {shape} and dtype {dtype} needs {expected:,} items or bytes, '
      f'found {describe(found if found is not None else data)}'
    )


def check_dtype_state(state: Any) -> None:
  """Refuses a dtype BUILD state other than numpy's for a numeric dtype: byte order only.

  numpy writes `(3, byteorder, None, None, None, -1, -1, flags)`; the Nones are
  sub-array, names and fields, the -1s the item size and alignment of flexible types.
  """
  if not (
    isinstance(state, tuple)
    and len(state) in (8, 9)
    and state[1] in ('<', '>', '|', '=', b'<', b'>', b'|', b'=')
    and state[2:5] == (None, None, None)
    and state[5:7] == (-1, -1)
  ):
    raise TorchFileError(
      f'numpy dtype state {describe(state)}; only plain numeric dtypes are accepted'
    )


NUMPY_GLOBALS = {
  '_reconstruct': _numpy_reconstruct,
  'scalar': _numpy_scalar,
  'dtype': _numpy_dtype,
  'ndarray': _NDARRAY,
}
NUMPY_MODULES = ('numpy.core.multiarray', 'numpy._core.multiarray', 'numpy')

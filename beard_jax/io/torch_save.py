"""Writes `torch.save`-format files without importing torch.

`save_torch_file(path, obj)` writes the zip container that `torch.save` writes
(PyTorch ≥ 1.6), so that `torch.load(path, weights_only=True)` and this project's
`torch_files.load_torch_file` both read it back. `obj` may nest dicts (str keys),
lists, tuples, str, int, float, bool, None and numpy arrays; every array becomes
a CPU tensor with its own storage. Python scalars of numpy type are written as
Python numbers. The dtypes torch knows by a legacy storage class are accepted
(`float32`, `float64`, `float16`, `int64`, `int32`, `int16`, `int8`, `uint8`,
`bool`).

The container, as torch 2.x writes it (checked against torch 2.13):

  archive/data.pkl            protocol-2 pickle of `obj`; a tensor is
                              `torch._utils._rebuild_tensor_v2(storage, 0, size,
                              stride, False, collections.OrderedDict())` and its
                              storage the persistent id
                              `('storage', torch.<Type>Storage, '<n>', 'cpu', numel)`
  archive/.format_version     '1'
  archive/.storage_alignment  '64'
  archive/byteorder           'little'
  archive/data/<n>            the raw little-endian bytes of storage n, starting
                              at a multiple of 64 bytes in the file (so that
                              `torch.load(..., mmap=True)` works)
  archive/version             '3\\n'

every entry stored uncompressed. torch also writes a random
`.data/serialization_id`; it is left out, so the same object always gives the
same bytes. The pickle is emitted opcode by opcode (no memo), which keeps the
writer independent of `pickle`'s private classes.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
from typing import Any

import numpy as np

from beard_jax.io.atomic import atomic_write_bytes

_STORAGE_TYPES = {
  np.dtype(np.float32): 'FloatStorage',
  np.dtype(np.float64): 'DoubleStorage',
  np.dtype(np.float16): 'HalfStorage',
  np.dtype(np.int64): 'LongStorage',
  np.dtype(np.int32): 'IntStorage',
  np.dtype(np.int16): 'ShortStorage',
  np.dtype(np.int8): 'CharStorage',
  np.dtype(np.uint8): 'ByteStorage',
  np.dtype(np.bool_): 'BoolStorage',
}

_ALIGNMENT = 64
_ARCHIVE = 'archive'
# Extra-field id torch uses for its alignment padding ('FB').
_PADDING_FIELD_ID = 0x4246
_LOCAL_HEADER_SIZE = 30


class _PickleEmitter:
  """Protocol-2 pickle opcodes for plain values and torch tensors (no memo)."""

  def __init__(self):
    self.out = io.BytesIO()
    self.storages: list[np.ndarray] = []

  def _global(self, module: str, name: str) -> None:
    self.out.write(b'c' + f'{module}\n{name}\n'.encode('ascii'))

  def _str(self, text: str) -> None:
    data = text.encode('utf-8')
    self.out.write(b'X' + struct.pack('<I', len(data)) + data)

  def _int(self, value: int) -> None:
    if -(2**31) <= value < 2**31:
      self.out.write(b'J' + struct.pack('<i', value))
    else:
      data = value.to_bytes((value.bit_length() + 8) // 8, 'little', signed=True)
      self.out.write(b'\x8a' + struct.pack('<B', len(data)) + data)

  def _tuple(self, items) -> None:
    self.out.write(b'(')
    for item in items:
      self.emit(item)
    self.out.write(b't')

  def _tensor(self, array: np.ndarray) -> None:
    if array.dtype not in _STORAGE_TYPES:
      raise TypeError(f'no torch storage for dtype {array.dtype}; use one of {_STORAGE_TYPES}')
    array = np.array(array, order='C', copy=not array.flags.c_contiguous)  # Keeps 0-d arrays.
    key = str(len(self.storages))
    self.storages.append(array)
    self._global('torch._utils', '_rebuild_tensor_v2')
    self.out.write(b'(')
    # The persistent id of the storage: ('storage', <Type>Storage, key, 'cpu', numel).
    self.out.write(b'(')
    self._str('storage')
    self._global('torch', _STORAGE_TYPES[array.dtype])
    self._str(key)
    self._str('cpu')
    self._int(int(array.size))
    self.out.write(b't' + b'Q')  # TUPLE, BINPERSID.
    self._int(0)  # Storage offset.
    self._tuple(int(s) for s in array.shape)
    self._tuple(int(s) // array.itemsize for s in array.strides)
    self.out.write(b'\x89')  # requires_grad=False.
    self._global('collections', 'OrderedDict')
    self.out.write(b')R')  # OrderedDict(): backward hooks.
    self.out.write(b'tR')  # TUPLE, REDUCE: the tensor.

  def emit(self, obj: Any) -> None:
    """Appends the opcodes that rebuild `obj`."""
    if isinstance(obj, np.ndarray):
      self._tensor(obj)
    elif obj is None:
      self.out.write(b'N')
    elif isinstance(obj, bool | np.bool_):
      self.out.write(b'\x88' if obj else b'\x89')
    elif isinstance(obj, int | np.integer):
      self._int(int(obj))
    elif isinstance(obj, float | np.floating):
      self.out.write(b'G' + struct.pack('>d', float(obj)))
    elif isinstance(obj, str):
      self._str(obj)
    elif isinstance(obj, dict):
      self.out.write(b'}')
      if obj:
        self.out.write(b'(')
        for name, value in obj.items():
          if not isinstance(name, str):
            raise TypeError(f'dict keys must be str, found {type(name).__name__}')
          self._str(name)
          self.emit(value)
        self.out.write(b'u')  # SETITEMS.
    elif isinstance(obj, list):
      self.out.write(b']')
      if obj:
        self.out.write(b'(')
        for item in obj:
          self.emit(item)
        self.out.write(b'e')  # APPENDS.
    elif isinstance(obj, tuple):
      self._tuple(obj)
    else:
      raise TypeError(
        f'cannot save {type(obj).__name__}: only dict, list, tuple, str, numbers, bool, '
        'None and numpy arrays'
      )


def _write_aligned(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
  """Stores `data` so that its first byte sits at a multiple of `_ALIGNMENT` in the file."""
  info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
  info.compress_type = zipfile.ZIP_STORED
  offset = archive.fp.tell()
  unpadded = offset + _LOCAL_HEADER_SIZE + len(name.encode('utf-8')) + 4
  padding = -unpadded % _ALIGNMENT
  info.extra = struct.pack('<HH', _PADDING_FIELD_ID, padding) + b'Z' * padding
  archive.writestr(info, data)


def torch_file_bytes(obj: Any) -> bytes:
  """The bytes `save_torch_file` writes for `obj` (see the module docstring)."""
  emitter = _PickleEmitter()
  emitter.out.write(b'\x80\x02')  # PROTO 2.
  emitter.emit(obj)
  emitter.out.write(b'.')  # STOP.
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, 'w', zipfile.ZIP_STORED) as archive:
    _write_aligned(archive, f'{_ARCHIVE}/data.pkl', emitter.out.getvalue())
    _write_aligned(archive, f'{_ARCHIVE}/.format_version', b'1')
    _write_aligned(archive, f'{_ARCHIVE}/.storage_alignment', str(_ALIGNMENT).encode())
    _write_aligned(archive, f'{_ARCHIVE}/byteorder', b'little')
    for key, array in enumerate(emitter.storages):
      little = array.astype(array.dtype.newbyteorder('<'), copy=False)
      _write_aligned(archive, f'{_ARCHIVE}/data/{key}', little.tobytes())
    _write_aligned(archive, f'{_ARCHIVE}/version', b'3\n')
  return buffer.getvalue()


def save_torch_file(path: str | os.PathLike, obj: Any) -> None:
  """Writes `obj` as `torch.save(obj, path)` would, atomically (see the module docstring).

  Args:
    path: the file to write (`.pt`).
    obj: nested dict / list / tuple / str / numbers / bool / None / numpy arrays.

  Raises:
    TypeError: an object or dtype that has no torch counterpart here, or a
      non-str dict key.
  """
  atomic_write_bytes(path, torch_file_bytes(obj))

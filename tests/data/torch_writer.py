"""Writes PyTorch-format files without torch, for tests (benign and hostile).

`write_torch_zip(path, obj)` writes the zip container that `torch.save` writes
(`archive/data.pkl`, `archive/byteorder`, `archive/data/<key>` raw storages,
`archive/version`); `write_torch_legacy(path, obj)` writes the pre-1.6 stream
(`_use_new_zipfile_serialization=False`). In `obj`, `Tensor(array)` stands for a
tensor and pickles as
`torch._utils._rebuild_tensor_v2(storage, 0, shape, stride, False, OrderedDict())`
with a persistent storage id, as torch does; `View(storage, size, stride, offset)`
is any view of a flat storage (views of the same array share one storage);
`Call(Global(module, name), args)` pickles as an arbitrary `module.name(*args)`
call, to build hostile files.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile

import numpy as np

_STORAGE_NAMES = {
  np.dtype(np.float32): 'FloatStorage',
  np.dtype(np.float64): 'DoubleStorage',
  np.dtype(np.float16): 'HalfStorage',
  np.dtype(np.int64): 'LongStorage',
  np.dtype(np.int32): 'IntStorage',
  np.dtype(np.uint8): 'ByteStorage',
  np.dtype(np.bool_): 'BoolStorage',
}


class Global:
  """Pickles as the GLOBAL opcode `module.name`, whatever it is."""

  def __init__(self, module: str, name: str):
    self.module, self.name = module, name

  def __call__(self, *args):  # save_reduce insists that the function is callable.
    raise AssertionError('never called')


class Call:
  """Pickles as `func(*args)` (REDUCE), with an optional BUILD `state`."""

  def __init__(self, func, args=(), state=None):
    self.func, self.args, self.state = func, tuple(args), state


class Tensor:
  """A numpy array that pickles the way torch pickles a tensor."""

  def __init__(self, array):
    self.array = np.ascontiguousarray(array)


class View:
  """The view (`offset`, `size`, `stride`, in elements) of the flat array `storage`.

  Nothing checks that the view fits its storage: hostile files are made with it.
  """

  def __init__(self, storage, size, stride, offset=0):
    self.storage, self.size, self.stride, self.offset = storage, size, stride, offset


class _Storage:
  def __init__(self, key: str, array: np.ndarray):
    self.key, self.array = key, array


class _Writer(pickle._Pickler):
  def __init__(self, file, storages, legacy):
    super().__init__(file, protocol=2)
    self.storages, self.legacy = storages, legacy
    self.storage_of: dict[int, _Storage] = {}  # id(array) -> its storage

  def persistent_id(self, obj):
    if isinstance(obj, _Storage):
      name = _STORAGE_NAMES[obj.array.dtype]
      pid = ('storage', Global('torch', name), obj.key, 'cpu', obj.array.size)
      return pid + (None,) if self.legacy else pid  # Legacy ids end with view metadata.
    return None

  def storage(self, array: np.ndarray) -> _Storage:
    if id(array) not in self.storage_of:
      key = str(len(self.storages))
      self.storage_of[id(array)] = _Storage(key, np.ascontiguousarray(array).reshape(-1))
      self.storages[key] = self.storage_of[id(array)].array
    return self.storage_of[id(array)]

  def save(self, obj, save_persistent_id=True):
    if isinstance(obj, Global):
      self.write(pickle.GLOBAL + f'{obj.module}\n{obj.name}\n'.encode())
      return
    super().save(obj, save_persistent_id)

  def reducer_override(self, obj):
    if isinstance(obj, Call):
      return (obj.func, obj.args, obj.state)
    if isinstance(obj, Tensor):
      stride = tuple(s // obj.array.itemsize for s in obj.array.strides)
      obj = View(obj.array, obj.array.shape, stride)
    if isinstance(obj, View):
      rebuild = Global('torch._utils', '_rebuild_tensor_v2')
      hooks = Call(Global('collections', 'OrderedDict'))
      args = (self.storage(obj.storage), obj.offset, tuple(obj.size), tuple(obj.stride))
      return (rebuild, (*args, False, hooks))
    return NotImplemented


def pickle_bytes(obj, legacy: bool = False) -> tuple[bytes, dict[str, np.ndarray]]:
  """The data.pkl bytes of `obj` and the storages its tensors refer to."""
  buffer, storages = io.BytesIO(), {}
  _Writer(buffer, storages, legacy).dump(obj)
  return buffer.getvalue(), storages


def write_torch_zip(path, obj) -> None:
  """Writes `obj` as `torch.save` would (zip container, little-endian)."""
  data, storages = pickle_bytes(obj)
  with zipfile.ZipFile(path, 'w') as archive:
    archive.writestr('archive/data.pkl', data)
    archive.writestr('archive/byteorder', 'little')
    for key, array in storages.items():
      archive.writestr(f'archive/data/{key}', array.astype(array.dtype.newbyteorder('<')).tobytes())
    archive.writestr('archive/version', '3\n')


LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_SYS_INFO = {
  'protocol_version': 1001,
  'little_endian': True,
  'type_sizes': {'short': 2, 'int': 4, 'long': 4},
}


def write_torch_legacy(path, obj) -> None:
  """Writes `obj` in torch's pre-1.6 stream format, little-endian.

  Magic number, protocol 1001 and sys-info pickles, the object's pickle, the
  sorted storage keys, then per key an int64 element count and the raw elements.
  """
  data, storages = pickle_bytes(obj, legacy=True)
  with open(path, 'wb') as f:
    for header in (LEGACY_MAGIC, 1001, _LEGACY_SYS_INFO):
      f.write(pickle.dumps(header, protocol=2))
    f.write(data)
    f.write(pickle.dumps(sorted(storages), protocol=2))
    for key in sorted(storages):
      array = storages[key]
      f.write(struct.pack('<q', array.size))
      f.write(array.astype(array.dtype.newbyteorder('<')).tobytes())


def write_plain_pickle(path, obj) -> None:
  """Writes `obj` as a plain protocol-2 pickle (Global/Call markers allowed, no tensors)."""
  data, storages = pickle_bytes(obj)
  assert not storages, 'plain pickles hold no torch storages'
  with open(path, 'wb') as f:
    f.write(data)

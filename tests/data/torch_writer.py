"""Writes PyTorch-format files without torch, for tests (benign and hostile).

`write_torch_zip(path, obj)` writes the zip container that `torch.save` writes
(`archive/data.pkl`, `archive/byteorder`, `archive/data/<key>` raw storages,
`archive/version`). In `obj`, `Tensor(array)` stands for a tensor and pickles as
`torch._utils._rebuild_tensor_v2(storage, 0, shape, stride, False, OrderedDict())`
with a persistent storage id, as torch does; `Call(Global(module, name), args)`
pickles as an arbitrary `module.name(*args)` call, to build hostile files.
"""

from __future__ import annotations

import io
import pickle
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


class _Storage:
  def __init__(self, key: str, array: np.ndarray):
    self.key, self.array = key, array


class _Writer(pickle._Pickler):
  def __init__(self, file, storages):
    super().__init__(file, protocol=2)
    self.storages = storages

  def persistent_id(self, obj):
    if isinstance(obj, _Storage):
      name = _STORAGE_NAMES[obj.array.dtype]
      return ('storage', Global('torch', name), obj.key, 'cpu', obj.array.size)
    return None

  def save(self, obj, save_persistent_id=True):
    if isinstance(obj, Global):
      self.write(pickle.GLOBAL + f'{obj.module}\n{obj.name}\n'.encode())
      return
    super().save(obj, save_persistent_id)

  def reducer_override(self, obj):
    if isinstance(obj, Call):
      return (obj.func, obj.args, obj.state)
    if isinstance(obj, Tensor):
      key = str(len(self.storages))
      storage = _Storage(key, obj.array.reshape(-1))
      self.storages[key] = storage.array
      stride = tuple(s // obj.array.itemsize for s in obj.array.strides)
      rebuild = Global('torch._utils', '_rebuild_tensor_v2')
      hooks = Call(Global('collections', 'OrderedDict'))
      return (rebuild, (storage, 0, obj.array.shape, stride, False, hooks))
    return NotImplemented


def pickle_bytes(obj) -> tuple[bytes, dict[str, np.ndarray]]:
  """The data.pkl bytes of `obj` and the storages its tensors refer to."""
  buffer, storages = io.BytesIO(), {}
  _Writer(buffer, storages).dump(obj)
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


def write_plain_pickle(path, obj) -> None:
  """Writes `obj` as a plain protocol-2 pickle (Global/Call markers allowed, no tensors)."""
  data, storages = pickle_bytes(obj)
  assert not storages, 'plain pickles hold no torch storages'
  with open(path, 'wb') as f:
    f.write(data)

"""Reads PyTorch `torch.save` files as numpy, without executing pickled code.

A `.pt`/`.pth` file is a pickle, and unpickling runs whatever callables the file
names. This reader never imports torch and resolves only an allow-list of
globals, each mapped to a function of our own that builds a plain value:

  * tensors (`torch._utils._rebuild_tensor_v2`, `_rebuild_parameter`, typed
    storages such as `torch.FloatStorage`) become `numpy.ndarray`s;
  * numpy arrays, dtypes and scalars (as saved inside `accs_all_exps`);
  * `collections.OrderedDict` becomes a `dict`; lists, tuples, str, numbers.

Anything else (`os.system`, `builtins.eval`, an arbitrary class, …) raises
`UnsafeFileError` before it is called. The pickle `BUILD` opcode (which sets
attributes or calls `__setstate__`) is accepted only on numpy arrays, numpy dtypes
and state dicts, so a file cannot alter the allow-listed objects themselves and
corrupt later loads. Both the zip container (torch ≥ 1.6) and the legacy tar-less
stream format are read. `load_pickle_file` applies the same rules to plain pickles
(the official CIFAR batches, for example).
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
import struct
import zipfile
from typing import Any

import ml_dtypes
import numpy as np


class TorchFileError(ValueError):
  """A file that is not a readable PyTorch save file."""


class UnsafeFileError(TorchFileError):
  """A pickle that asks for something other than tensors, arrays, numbers, lists, dicts."""


_STORAGE_DTYPES = {
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

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class _StorageType:
  """Stands in for `torch.FloatStorage` & co.: only carries the dtype."""

  __slots__ = ('name', 'dtype')

  def __init__(self, name: str):
    self.name = name
    self.dtype = np.dtype(_STORAGE_DTYPES[name])

  def __repr__(self):
    return f'torch.{self.name}'


def _rebuild_tensor(storage, storage_offset, size, stride, *unused_args):
  """`torch._utils._rebuild_tensor_v2` for a flat numpy storage."""
  if not isinstance(storage, np.ndarray) or storage.ndim != 1:
    raise TorchFileError('a tensor refers to a storage that is not a flat array')
  size = tuple(int(s) for s in size)
  stride = tuple(int(s) for s in stride)
  if any(s < 0 for s in size) or any(s < 0 for s in stride):
    raise TorchFileError(f'a tensor has a negative size {size} or stride {stride}')
  if len(size) != len(stride):
    raise TorchFileError(f'a tensor has size {size} but stride {stride}')
  needed = storage_offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) + 1
  if 0 in size:
    return np.zeros(size, storage.dtype)
  if storage_offset < 0 or needed > storage.size:
    raise TorchFileError(
      f'a tensor of size {size}, stride {stride} and offset {storage_offset} '
      f'reads past the end of its storage of {storage.size} elements'
    )
  itemsize = storage.dtype.itemsize
  view = np.lib.stride_tricks.as_strided(
    storage[storage_offset:],
    shape=size,
    strides=tuple(s * itemsize for s in stride),
    writeable=False,
  )
  return np.array(view, order='C')  # A C-contiguous copy that owns its memory (not order K).


def _rebuild_parameter(data, *unused_args):
  """`torch._utils._rebuild_parameter`: a Parameter is its data."""
  return data


class _StateDict(dict):
  """`collections.OrderedDict` as torch pickles it: a dict whose BUILD sets `_metadata`."""

  def __setstate__(self, state):
    if not isinstance(state, dict):
      raise UnsafeFileError(f'unexpected OrderedDict state of type {type(state).__name__}')
    self.metadata = state.get('_metadata')


def _codecs_encode(text, encoding='utf-8'):
  if encoding not in ('latin1', 'latin-1'):
    raise UnsafeFileError(f'_codecs.encode with encoding {encoding!r} is not expected')
  return codecs.encode(text, 'latin1')


def _numpy_reconstruct(cls, shape, dtype_code):
  if cls is not np.ndarray:
    raise UnsafeFileError(f'numpy _reconstruct of {cls!r} is not allowed, only ndarray')
  return np.ndarray.__new__(np.ndarray, shape, dtype_code)


def _numpy_scalar(dtype, data=None):
  if dtype.hasobject:
    raise UnsafeFileError('numpy object scalars are not allowed')
  return np.frombuffer(data, dtype=dtype, count=1)[0]


_NUMPY_GLOBALS = {
  '_reconstruct': _numpy_reconstruct,
  'scalar': _numpy_scalar,
  'dtype': np.dtype,
  'ndarray': np.ndarray,
}
_NUMPY_MODULES = ('numpy.core.multiarray', 'numpy._core.multiarray', 'numpy')

_ALLOWED_GLOBALS = {
  ('collections', 'OrderedDict'): _StateDict,
  ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
  ('torch._utils', '_rebuild_tensor'): _rebuild_tensor,
  ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
  ('_codecs', 'encode'): _codecs_encode,
  ('builtins', 'set'): set,
  ('builtins', 'frozenset'): frozenset,
  ('__builtin__', 'set'): set,
  ('__builtin__', 'frozenset'): frozenset,
}
for _module in _NUMPY_MODULES:
  for _name, _fn in _NUMPY_GLOBALS.items():
    _ALLOWED_GLOBALS[(_module, _name)] = _fn
for _name in _STORAGE_DTYPES:
  _ALLOWED_GLOBALS[('torch', _name)] = _StorageType(_name)


# The only objects whose attributes or `__setstate__` a pickle may set (BUILD).
_BUILDABLE_TYPES = (np.ndarray, np.dtype, _StateDict)


class _RestrictedUnpickler(pickle._Unpickler):
  """An unpickler that resolves only `_ALLOWED_GLOBALS` and reads storages lazily.

  It is the pure-Python unpickler so that `BUILD` can be restricted to
  `_BUILDABLE_TYPES`; the C one would let a pickle set attributes on the
  allow-listed functions and storage types themselves.
  """

  dispatch = dict(pickle._Unpickler.dispatch)

  def __init__(self, stream, load_storage, source: str, encoding: str = 'ASCII'):
    super().__init__(stream, encoding=encoding)
    self._load_storage = load_storage
    self._source = source

  def _load_build(self):
    target = self.stack[-2] if len(self.stack) >= 2 else None
    if not isinstance(target, _BUILDABLE_TYPES):
      raise UnsafeFileError(
        f'refusing to load {self._source}: its pickle sets the state of a '
        f'{type(target).__name__}; only arrays, dtypes and dicts may be built'
      )
    pickle._Unpickler.load_build(self)

  dispatch[pickle.BUILD[0]] = _load_build

  def find_class(self, module, name):
    if (module, name) in _ALLOWED_GLOBALS:
      return _ALLOWED_GLOBALS[(module, name)]
    raise UnsafeFileError(
      f'refusing to load {self._source}: its pickle asks for {module}.{name}; only '
      'tensors, numpy arrays and scalars, numbers, strings, lists and dicts are accepted'
    )

  def persistent_load(self, pid):
    if not isinstance(pid, tuple) or not pid or pid[0] != 'storage':
      raise UnsafeFileError(f'refusing to load {self._source}: unexpected persistent id {pid!r}')
    storage_type = pid[1]
    if not isinstance(storage_type, _StorageType):
      raise UnsafeFileError(f'refusing to load {self._source}: storage type {storage_type!r}')
    return self._load_storage(storage_type, pid)


def _load_zip(path: str) -> Any:
  with zipfile.ZipFile(path) as archive:
    names = archive.namelist()
    pickles = [n for n in names if n.endswith('/data.pkl') or n == 'data.pkl']
    if len(pickles) != 1:
      raise TorchFileError(f'{path}: a torch zip file holds exactly one data.pkl, found {pickles}')
    prefix = pickles[0][: -len('data.pkl')]
    byteorder_name = prefix + 'byteorder'
    if byteorder_name in names and archive.read(byteorder_name).strip() != b'little':
      raise TorchFileError(f'{path}: big-endian torch files are not supported')
    cache: dict[str, np.ndarray] = {}

    def load_storage(storage_type: _StorageType, pid: tuple) -> np.ndarray:
      key = str(pid[2])
      if key not in cache:
        member = f'{prefix}data/{key}'
        if member not in names:
          raise TorchFileError(f'{path}: storage {key!r} is missing from the archive')
        raw = archive.read(member)
        if len(raw) % storage_type.dtype.itemsize:
          raise TorchFileError(f'{path}: storage {key!r} has a truncated last element')
        cache[key] = np.frombuffer(raw, dtype=storage_type.dtype.newbyteorder('<'))
      return cache[key]

    stream = io.BytesIO(archive.read(pickles[0]))
    return _RestrictedUnpickler(stream, load_storage, path).load()


def _load_legacy(path: str) -> Any:
  """The pre-1.6 format: magic, protocol, sys-info pickles, object, keys, raw storages."""
  with open(path, 'rb') as f:

    def plain_load():
      return _RestrictedUnpickler(f, _no_storage, path).load()

    if plain_load() != _LEGACY_MAGIC or plain_load() != _LEGACY_PROTOCOL:
      raise TorchFileError(f'{path}: not a PyTorch save file')
    plain_load()  # sys_info: endianness and type sizes, all plain values.
    storages: dict[str, tuple[_StorageType, int]] = {}

    def record_storage(storage_type: _StorageType, pid: tuple) -> np.ndarray:
      if len(pid) > 5 and pid[5] is not None:
        raise TorchFileError(f'{path}: legacy storage views are not supported')
      key, numel = str(pid[2]), int(pid[4])
      storages[key] = (storage_type, numel)
      return _PendingStorage(key)

    obj = _RestrictedUnpickler(f, record_storage, path).load()
    keys = plain_load()
    loaded = {}
    for key in keys:
      storage_type, _ = storages[str(key)]
      (numel,) = struct.unpack('<q', f.read(8))
      raw = f.read(numel * storage_type.dtype.itemsize)
      if len(raw) != numel * storage_type.dtype.itemsize:
        raise TorchFileError(f'{path}: the file ends inside storage {key!r}')
      loaded[str(key)] = np.frombuffer(raw, dtype=storage_type.dtype)
  return _resolve_pending(obj, loaded, path)


def _no_storage(storage_type, pid):
  raise TorchFileError(f'unexpected storage {pid!r} in a header record')


class _PendingStorage:
  """A legacy storage whose bytes follow the pickle; tensors built on it wait."""

  def __init__(self, key: str):
    self.key = key


class _PendingTensor:
  def __init__(self, args):
    self.args = args


def _resolve_pending(obj, loaded, path):
  if isinstance(obj, _PendingTensor):
    storage, *rest = obj.args
    if storage.key not in loaded:
      raise TorchFileError(f'{path}: storage {storage.key!r} is never written')
    return _rebuild_tensor(loaded[storage.key], *rest)
  if isinstance(obj, dict):
    return {k: _resolve_pending(v, loaded, path) for k, v in obj.items()}
  if isinstance(obj, list):
    return [_resolve_pending(v, loaded, path) for v in obj]
  if isinstance(obj, tuple):
    return tuple(_resolve_pending(v, loaded, path) for v in obj)
  return obj


def _rebuild_tensor_any(storage, *args):
  if isinstance(storage, _PendingStorage):
    return _PendingTensor((storage, *args))
  return _rebuild_tensor(storage, *args)


for _key in [('torch._utils', '_rebuild_tensor_v2'), ('torch._utils', '_rebuild_tensor')]:
  _ALLOWED_GLOBALS[_key] = _rebuild_tensor_any


def _as_plain(obj):
  """Turns the loader's dict subclasses into plain dicts, recursively."""
  if isinstance(obj, dict):
    return {k: _as_plain(v) for k, v in obj.items()}
  if isinstance(obj, list):
    return [_as_plain(v) for v in obj]
  if isinstance(obj, tuple):
    return tuple(_as_plain(v) for v in obj)
  return obj


def load_torch_file(path: str | os.PathLike) -> Any:
  """Loads a `torch.save` file into plain Python and numpy, executing no pickled code.

  Args:
    path: a `.pt`/`.pth` file written by `torch.save` (zip or legacy format).

  Returns:
    The saved object with every tensor as a `numpy.ndarray` (same dtype and
    shape, C-contiguous), every `OrderedDict` as a `dict`.

  Raises:
    FileNotFoundError: no such file.
    UnsafeFileError: the pickle names a global outside the allow-list.
    TorchFileError: the file is truncated, corrupt or not a torch save file.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'no such PyTorch file: {path}')
  try:
    if zipfile.is_zipfile(path):
      return _as_plain(_load_zip(path))
    return _as_plain(_load_legacy(path))
  except TorchFileError:
    raise
  except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, struct.error, KeyError) as e:
    raise TorchFileError(f'{path} is not a readable PyTorch save file: {e}') from e
  except (TypeError, ValueError, AttributeError, IndexError, OverflowError) as e:
    raise TorchFileError(f'{path} holds malformed data: {type(e).__name__}: {e}') from e


def _no_persistent_ids(storage_type, pid):
  raise UnsafeFileError(f'unexpected persistent id {pid!r} in a plain pickle')


def load_pickle_file(path: str | os.PathLike, *, encoding: str = 'bytes') -> Any:
  """Loads a plain pickle (not a torch file) under the same allow-list, running no code.

  Meant for data files such as the official CIFAR python batches: dicts of
  strings, lists, numbers and numpy arrays, possibly written by Python 2.

  Args:
    path: the pickle file.
    encoding: how Python 2 `str` objects are decoded, as in `pickle.load`;
      `'bytes'` (the CIFAR authors' choice) keeps them as `bytes`.

  Returns:
    The unpickled object; `OrderedDict`s become `dict`s.

  Raises:
    FileNotFoundError: no such file.
    UnsafeFileError: the pickle names a global outside the allow-list.
    TorchFileError: the file is truncated or not a pickle.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'no such pickle file: {path}')
  try:
    with open(path, 'rb') as f:
      return _as_plain(_RestrictedUnpickler(f, _no_persistent_ids, path, encoding).load())
  except TorchFileError:
    raise
  except (pickle.UnpicklingError, EOFError, struct.error, KeyError) as e:
    raise TorchFileError(f'{path} is not a readable pickle: {e}') from e
  except (TypeError, ValueError, AttributeError, IndexError, OverflowError) as e:
    raise TorchFileError(f'{path} holds malformed data: {type(e).__name__}: {e}') from e

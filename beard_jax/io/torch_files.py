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
attributes or calls `__setstate__`) is accepted only on numpy arrays, plain numpy
dtypes and state dicts, so a file cannot alter the allow-listed objects themselves
and corrupt later loads. Both the zip container (torch ≥ 1.6) and the legacy
tar-less stream format are read. `load_pickle_file` applies the same rules to
plain pickles (the official CIFAR batches, for example).

A file is untrusted input, so every size it declares is checked against the
bytes it stores before anything is allocated, and what one file may make the
reader allocate is capped (the limits below are module constants): a tiny file
cannot ask for gigabytes, nest containers without end, or make pickle recurse.
Every failure is a one-line `TorchFileError` (a `ValueError`) that starts with
the file's path and says what was found and what was expected.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import pickle
import reprlib
import struct
import zipfile
import zlib
from typing import Any

import ml_dtypes
import numpy as np

# Bytes that reading one file may allocate for decompressed zip members and
# tensors, in all. A BEARD checkpoint is ~1.3 MB; IPC 50 of Tiny-ImageNet is
# 200·50·3·64·64·4 bytes ≈ 491 MB, read once and materialised once.
MAX_MATERIALISED_BYTES = 2 * 1024**3
# Bytes by which one file's tensors may exceed their storages in all: stride-0
# or overlapping views (`expand`) repeat stored elements; real files do so for
# small tensors only.
MAX_BROADCAST_BYTES = 64 * 1024**2
# Nesting of containers (dicts, lists, tuples) a file may hold; real files nest
# a handful of levels. Bounds the recursion of hashing and of the conversion.
MAX_NESTING_DEPTH = 100
# The largest uncompressed/compressed size ratio of a compressed zip member
# over 1 MiB (torch stores its members uncompressed; zip bombs reach ~1000).
MAX_COMPRESSION_RATIO = 100

_MAX_DIMS = 64  # numpy's limit on array dimensions.
_NUMERIC_KINDS = 'biufc'  # numpy dtype kinds: bool, int, uint, float, complex.
_MAX_ELEMENTS_BYTES = 2**62  # no array of more bytes than this can exist.
_ZIP_SIGNATURES = (b'PK\x03\x04', b'PK\x05\x06')
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class TorchFileError(ValueError):
  """A file that is not a readable PyTorch save file."""


class UnsafeFileError(TorchFileError):
  """A pickle that asks for something other than tensors, arrays, numbers, lists, dicts."""


_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel, _SHORT_REPR.maxstring, _SHORT_REPR.maxother = 3, 40, 40


def _describe(value: Any) -> str:
  """A short repr of a value read from a file; never deep, never failing."""
  try:
    return _SHORT_REPR.repr(value)
  except (ValueError, TypeError, RecursionError):  # e.g. an int of more than 4,300 digits.
    return f'<{type(value).__name__}>'


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


class _StorageType:
  """Stands in for `torch.FloatStorage` & co.: only carries the dtype."""

  __slots__ = ('name', 'dtype')

  def __init__(self, name: str):
    self.name = name
    self.dtype = np.dtype(_STORAGE_DTYPES[name])

  def __repr__(self):
    return f'torch.{self.name}'


class _Allowance:
  """What reading one file may still allocate (`MAX_MATERIALISED_BYTES`, `MAX_BROADCAST_BYTES`)."""

  def __init__(self):
    self.bytes_left = MAX_MATERIALISED_BYTES
    self.broadcast_left = MAX_BROADCAST_BYTES

  def spend(self, nbytes: int, what: str, broadcast_bytes: int = 0) -> None:
    """Books `nbytes` (of which `broadcast_bytes` repeat stored ones) or refuses them."""
    if nbytes > self.bytes_left:
      raise TorchFileError(
        f'{what} needs {nbytes:,} bytes, more than the {self.bytes_left:,} left of the '
        f'{MAX_MATERIALISED_BYTES:,} one file may make this reader allocate '
        '(torch_files.MAX_MATERIALISED_BYTES)'
      )
    if broadcast_bytes > self.broadcast_left:
      raise TorchFileError(
        f'{what} repeats stored elements (a stride-0 or overlapping view) into {nbytes:,} '
        f'bytes, {broadcast_bytes:,} more than its storage holds; a file may expand its '
        f'tensors by {MAX_BROADCAST_BYTES:,} bytes in all (torch_files.MAX_BROADCAST_BYTES)'
      )
    self.bytes_left -= nbytes
    self.broadcast_left -= broadcast_bytes


def _dims(values: Any, what: str) -> tuple[int, ...]:
  """A tensor's size or stride as read from a pickle: at most 64 non-negative ints."""
  if not (
    isinstance(values, tuple | list)
    and len(values) <= _MAX_DIMS
    and all(type(v) is int and 0 <= v < _MAX_ELEMENTS_BYTES for v in values)
  ):
    raise TorchFileError(
      f'a tensor {what} is {_describe(values)}; expected at most {_MAX_DIMS} non-negative ints'
    )
  return tuple(values)


class _PendingStorage:
  """A legacy storage whose bytes follow the pickle; tensors built on it wait."""

  def __init__(self, key: str):
    self.key = key


class _PendingTensor:
  """A tensor on a `_PendingStorage`: `(storage_offset, size, stride)` kept for later."""

  def __init__(self, storage: _PendingStorage, layout: tuple):
    self.storage, self.layout = storage, layout


class _Tensors:
  """Builds the tensors of one file within its `_Allowance`."""

  def __init__(self, allowance: _Allowance):
    self.allowance = allowance

  def rebuild(self, storage, storage_offset, size, stride, *unused_args):
    """`torch._utils._rebuild_tensor_v2` (and `_rebuild_tensor`)."""
    if isinstance(storage, _PendingStorage):
      return _PendingTensor(storage, (storage_offset, size, stride))
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
    size, stride = _dims(size, 'size'), _dims(stride, 'stride')
    if type(storage_offset) is not int or len(size) != len(stride):
      raise TorchFileError(
        f'a tensor has size {size}, stride {stride} and offset {_describe(storage_offset)}; '
        'expected one stride per dimension and an int offset'
      )
    itemsize = storage.dtype.itemsize
    if math.prod(max(n, 1) for n in size) * itemsize > _MAX_ELEMENTS_BYTES:
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
    raise UnsafeFileError(f'_codecs.encode with encoding {_describe(encoding)} is not expected')
  return text.encode('latin1')


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
    raise UnsafeFileError(f'numpy _reconstruct of {_describe(cls)} is not allowed, only ndarray')
  if not (type(shape) is tuple and shape == (0,) and dtype_code in ('b', b'b')):
    raise TorchFileError(
      f'numpy _reconstruct declares shape {_describe(shape)} and type {_describe(dtype_code)}; '
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
    raise TorchFileError(f'numpy dtype {_describe(code)}; expected a type code such as f8')
  dtype = np.dtype(code.decode('latin1') if isinstance(code, bytes) else code, bool(align), True)
  if dtype.kind not in _NUMERIC_KINDS or dtype.shape:
    raise TorchFileError(f'numpy dtype {dtype}; only numeric dtypes are accepted')
  return dtype


def _numpy_scalar(dtype, data=None):
  if isinstance(data, str):  # A Python 2 pickle read with a text encoding.
    data = data.encode('latin1')
  if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
    raise UnsafeFileError(f'numpy scalar of {_describe(dtype)} from {_describe(data)}')
  return np.frombuffer(data, dtype=dtype, count=1)[0]


def _check_array_state(state: Any) -> None:
  """Refuses an ndarray BUILD state whose data does not fill its declared shape."""
  if not isinstance(state, tuple) or len(state) not in (4, 5):
    raise TorchFileError(f'numpy array state {_describe(state)}; expected (shape, dtype, …, data)')
  shape, dtype, _, data = state[-4:]
  count = math.prod(_dims(shape, 'numpy array shape'))
  if not isinstance(dtype, np.dtype):
    raise TorchFileError(f'numpy array state with dtype {_describe(dtype)}; expected a dtype')
  if dtype.hasobject:
    found, expected = (len(data) if isinstance(data, list) else None), count
  else:
    found = len(data) if isinstance(data, bytes | bytearray | str) else None
    expected = count * dtype.itemsize
  if found != expected:
    raise TorchFileError(
      f'a numpy array of shape {shape} and dtype {dtype} needs {expected:,} items or bytes, '
      f'found {_describe(found if found is not None else data)}'
    )


def _check_dtype_state(state: Any) -> None:
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
      f'numpy dtype state {_describe(state)}; only plain numeric dtypes are accepted'
    )


_NUMPY_GLOBALS = {
  '_reconstruct': _numpy_reconstruct,
  'scalar': _numpy_scalar,
  'dtype': _numpy_dtype,
  'ndarray': _NDARRAY,
}
_NUMPY_MODULES = ('numpy.core.multiarray', 'numpy._core.multiarray', 'numpy')

_ALLOWED_GLOBALS = {
  ('collections', 'OrderedDict'): _StateDict,
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
# Resolved per file, to the `_Tensors.rebuild` that holds that file's allowance.
_TENSOR_GLOBALS = (('torch._utils', '_rebuild_tensor_v2'), ('torch._utils', '_rebuild_tensor'))

# The only objects whose state a pickle may set (BUILD), each with its check.
_BUILD_CHECKS = {np.ndarray: _check_array_state, np.dtype: _check_dtype_state, _StateDict: None}
_TUPLE_OPCODES = (pickle.TUPLE, pickle.TUPLE1, pickle.TUPLE2, pickle.TUPLE3)


def _unknown_opcode(code: int):
  def refuse(unpickler):
    at = unpickler.stream.tell() - 1
    raise TorchFileError(f'corrupt pickle: unknown opcode 0x{code:02x} at byte {at:,}')

  return refuse


def _depth_checked(load_tuple):
  def load_and_check(unpickler):
    load_tuple(unpickler)
    unpickler.check_tuple_depth(unpickler.stack[-1])

  return load_and_check


class _RestrictedUnpickler(pickle._Unpickler):
  """An unpickler that resolves only `_ALLOWED_GLOBALS` and reads storages lazily.

  It is the pure-Python unpickler so that `BUILD` can be restricted to
  `_BUILD_CHECKS`' types (the C one would let a pickle set attributes on the
  allow-listed functions and storage types themselves) and tuple nesting can be
  bounded: hashing a tuple nested a million deep overflows the C stack.
  """

  dispatch = dict(pickle._Unpickler.dispatch)

  def __init__(self, stream, load_storage, tensors: _Tensors, encoding: str = 'ASCII'):
    super().__init__(stream, encoding=encoding)
    self.stream = stream
    self._load_storage = load_storage
    self._tensors = tensors
    self._tuple_depths: dict[int, tuple[tuple, int]] = {}  # id -> (tuple kept alive, depth)

  def check_tuple_depth(self, new: tuple) -> None:
    depths = (self._tuple_depths.get(id(e), (e, 1))[1] for e in new if type(e) is tuple)
    depth = 1 + max(depths, default=0)
    if depth > MAX_NESTING_DEPTH:
      raise TorchFileError(f'tuples are nested more than {MAX_NESTING_DEPTH} levels deep')
    self._tuple_depths[id(new)] = (new, depth)

  def _load_build(self):
    target = self.stack[-2] if len(self.stack) >= 2 else None
    checks = [check for kind, check in _BUILD_CHECKS.items() if isinstance(target, kind)]
    if not checks:
      raise UnsafeFileError(
        f'refusing to load: its pickle sets the state of a {type(target).__name__}; '
        'only arrays, dtypes and dicts may be built'
      )
    if checks[0] is not None:
      checks[0](self.stack[-1])
    pickle._Unpickler.load_build(self)

  def _load_bytearray8(self):
    """BYTEARRAY8 without allocating the declared length first (pickle's version does)."""
    (length,) = struct.unpack('<Q', self.read(8))
    data = self.read(length)
    if len(data) != length:
      raise TorchFileError(f'BYTEARRAY8 declares {length:,} bytes, but {len(data):,} remain')
    self.append(bytearray(data))

  def find_class(self, module, name):
    if (module, name) in _TENSOR_GLOBALS:
      return self._tensors.rebuild
    if (module, name) in _ALLOWED_GLOBALS:
      return _ALLOWED_GLOBALS[(module, name)]
    raise UnsafeFileError(
      f'refusing to load: its pickle asks for {module}.{name}; only tensors, numpy arrays '
      'and scalars, numbers, strings, lists and dicts are accepted'
    )

  def persistent_load(self, pid):
    if not (
      isinstance(pid, tuple)
      and len(pid) >= 5
      and type(pid[0]) is str
      and pid[0] == 'storage'
      and isinstance(pid[1], _StorageType)
      and type(pid[2]) is str
      and type(pid[4]) is int
      and pid[4] >= 0
    ):
      raise UnsafeFileError(
        f'refusing to load: unexpected persistent id {_describe(pid)}; expected '
        "('storage', torch.<Type>Storage, key, location, numel)"
      )
    return self._load_storage(pid[1], pid[2], pid[4], pid)


_RestrictedUnpickler.dispatch[pickle.BUILD[0]] = _RestrictedUnpickler._load_build
_RestrictedUnpickler.dispatch[pickle.BYTEARRAY8[0]] = _RestrictedUnpickler._load_bytearray8
for _opcode in _TUPLE_OPCODES:
  _loader = _RestrictedUnpickler.dispatch[_opcode[0]]
  _RestrictedUnpickler.dispatch[_opcode[0]] = _depth_checked(_loader)
for _code in set(range(256)) - set(_RestrictedUnpickler.dispatch):
  _RestrictedUnpickler.dispatch[_code] = _unknown_opcode(_code)


def _exception_text(error: Exception) -> str:
  return f'{type(error).__name__}: {error}' if str(error) else type(error).__name__


def _unpickle(stream: io.BytesIO, load_storage, tensors: _Tensors, encoding: str = 'ASCII'):
  """One pickle from `stream`; pickle's own errors become `TorchFileError`s with the offset."""
  try:
    return _RestrictedUnpickler(stream, load_storage, tensors, encoding).load()
  except TorchFileError:
    raise
  except (
    pickle.UnpicklingError,
    EOFError,
    KeyError,
    IndexError,
    struct.error,
    TypeError,
    ValueError,
    AttributeError,
    OverflowError,
  ) as e:
    with stream.getbuffer() as view:
      size, at = view.nbytes, stream.tell()
    if at >= size:  # Whatever pickle tripped over, the data ran out first.
      raise TorchFileError(f'truncated pickle: the data ends at byte {size:,}') from e
    raise TorchFileError(f'corrupt pickle at byte {at:,} of {size:,}: {_exception_text(e)}') from e


_IN_PROGRESS = object()


def _as_plain(obj: Any, resolve_pending=None) -> Any:
  """Plain dicts, lists and tuples in place of the loader's types; pending tensors resolved.

  Each container is converted once (shared ones stay shared); a container that
  holds itself, or nesting deeper than `MAX_NESTING_DEPTH`, is refused.
  """
  converted: dict[int, Any] = {}

  def convert(value, depth):
    if not isinstance(value, dict | list | tuple | _PendingTensor):
      return value
    done = converted.get(id(value))
    if done is _IN_PROGRESS:
      raise TorchFileError('a container holds itself; expected a tree of dicts, lists, tensors')
    if done is not None:
      return done
    if depth > MAX_NESTING_DEPTH:
      raise TorchFileError(f'containers are nested more than {MAX_NESTING_DEPTH} levels deep')
    converted[id(value)] = _IN_PROGRESS
    if isinstance(value, _PendingTensor):
      result = resolve_pending(value)
    elif isinstance(value, dict):
      result = {k: convert(v, depth + 1) for k, v in value.items()}
    elif isinstance(value, list):
      result = [convert(v, depth + 1) for v in value]
    else:
      result = tuple(convert(v, depth + 1) for v in value)
    converted[id(value)] = result
    return result

  return convert(obj, 0)


def _read_member(
  archive: zipfile.ZipFile, info: zipfile.ZipInfo, file_size: int, allowance: _Allowance
) -> bytes:
  """A zip member's bytes, its declared sizes checked against the file and the allowance."""
  name = info.filename
  if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
    raise TorchFileError(f'member {name!r} uses compression method {info.compress_type}')
  if not 0 <= info.header_offset <= info.header_offset + info.compress_size <= file_size:
    raise TorchFileError(
      f'truncated or damaged zip archive: member {name!r} declares {info.compress_size:,} '
      f'bytes from byte {info.header_offset:,}, but the file has {file_size:,}'
    )
  if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
    raise TorchFileError(
      f'damaged zip archive: stored member {name!r} declares {info.file_size:,} bytes '
      f'but occupies {info.compress_size:,}'
    )
  ratio_cap = MAX_COMPRESSION_RATIO * info.compress_size
  if info.compress_type == zipfile.ZIP_DEFLATED and info.file_size > max(ratio_cap, 2**20):
    raise TorchFileError(
      f'member {name!r} declares {info.file_size:,} bytes compressed into '
      f'{info.compress_size:,}: a ratio above {MAX_COMPRESSION_RATIO} (a zip bomb?)'
    )
  allowance.spend(info.file_size, f'member {name!r}')
  try:
    with archive.open(info) as member:
      data = member.read(info.file_size + 1)  # Reads no more than declared (and one byte).
  except (zipfile.BadZipFile, EOFError, OSError, ValueError, RuntimeError, zlib.error) as e:
    raise TorchFileError(f'zip member {name!r} is damaged: {_exception_text(e)}') from e
  if len(data) != info.file_size:
    raise TorchFileError(
      f'zip member {name!r} holds {len(data):,} bytes, not the {info.file_size:,} declared'
    )
  return data


def _open_zip(path: str, file_size: int) -> zipfile.ZipFile:
  errors = (zipfile.BadZipFile, EOFError, OSError, ValueError, struct.error, NotImplementedError)
  try:
    complete = zipfile.is_zipfile(path)
    archive = zipfile.ZipFile(path) if complete else None
  except errors as e:
    raise TorchFileError(
      f'damaged zip archive ({file_size:,} bytes): {_exception_text(e)}; '
      'expected a zip file written by torch.save'
    ) from e
  if archive is None:
    raise TorchFileError(
      f'truncated or damaged zip archive: its {file_size:,} bytes start like a zip file but do '
      'not end with the end-of-central-directory record that closes a complete one'
    )
  return archive


def _load_zip(path: str, file_size: int, tensors: _Tensors) -> Any:
  """The object of a torch ≥ 1.6 zip file: `<prefix>/data.pkl` and `<prefix>/data/<key>`."""
  with _open_zip(path, file_size) as archive:
    infos = {info.filename: info for info in archive.infolist()}
    pickles = [n for n in infos if n.endswith('/data.pkl') or n == 'data.pkl']
    if len(pickles) != 1:
      found = _describe(pickles)
      raise TorchFileError(f'a torch zip file holds exactly one data.pkl, found {found}')
    prefix = pickles[0][: -len('data.pkl')]

    def read(name: str) -> bytes:
      return _read_member(archive, infos[name], file_size, tensors.allowance)

    if prefix + 'byteorder' in infos and read(prefix + 'byteorder').strip() != b'little':
      raise TorchFileError('big-endian torch files are not supported')
    cache: dict[str, np.ndarray] = {}

    def load_storage(storage_type: _StorageType, key: str, numel: int, pid: tuple) -> np.ndarray:
      if key not in cache:
        name = f'{prefix}data/{key}'
        if name not in infos:
          raise TorchFileError(f'storage {key!r} is missing from the archive')
        nbytes = numel * storage_type.dtype.itemsize
        if nbytes != infos[name].file_size:
          raise TorchFileError(
            f'storage {key!r} declares {numel:,} {storage_type.dtype} elements ({nbytes:,} '
            f'bytes), but its archive member holds {infos[name].file_size:,} bytes'
          )
        cache[key] = np.frombuffer(read(name), dtype=storage_type.dtype.newbyteorder('<'))
      return cache[key]

    return _unpickle(io.BytesIO(read(pickles[0])), load_storage, tensors)


def _no_storage(storage_type, key, numel, pid):
  raise TorchFileError(f'unexpected storage {_describe(pid)} in a header record')


def _check_int(value: Any, expected: int, what: str) -> None:
  if type(value) is not int or value != expected:
    raise TorchFileError(
      f'a pickle whose {what} is {_describe(value)}, not {expected}; '
      'expected a file written by torch.save'
    )


def _read_legacy_storages(data: bytes, offset: int, keys: Any, storages: dict) -> dict:
  """The raw storages that follow a legacy pickle: per key, int64 numel, then the elements."""
  if not isinstance(keys, list) or not all(type(k) is str for k in keys):
    raise TorchFileError(f'legacy storage keys {_describe(keys)}; expected a list of strings')
  loaded = {}
  for key in keys:
    if key not in storages:
      raise TorchFileError(f'the file holds data for storage {key!r}, which no tensor uses')
    storage_type, numel = storages[key]
    if offset + 8 > len(data):
      raise TorchFileError(f'truncated file: it ends before storage {key!r} (byte {offset:,})')
    (stored_numel,) = struct.unpack_from('<q', data, offset)
    if stored_numel != numel:
      raise TorchFileError(
        f'storage {key!r} declares {numel:,} elements in the pickle but {stored_numel:,} '
        f'at byte {offset:,}'
      )
    nbytes, offset = numel * storage_type.dtype.itemsize, offset + 8
    if offset + nbytes > len(data):
      raise TorchFileError(
        f'truncated file: storage {key!r} needs {nbytes:,} bytes from byte {offset:,}, '
        f'but the file ends at byte {len(data):,}'
      )
    loaded[key] = np.frombuffer(data, storage_type.dtype, count=numel, offset=offset)
    offset += nbytes
  return loaded


def _load_legacy(data: bytes, tensors: _Tensors) -> Any:
  """The pre-1.6 format: magic, protocol, sys-info pickles, object, keys, raw storages."""
  stream = io.BytesIO(data)

  def plain_load():
    return _unpickle(stream, _no_storage, tensors)

  _check_int(plain_load(), _LEGACY_MAGIC, 'first value (the legacy magic number)')
  _check_int(plain_load(), _LEGACY_PROTOCOL, 'protocol version')
  plain_load()  # sys_info: endianness and type sizes, all plain values.
  storages: dict[str, tuple[_StorageType, int]] = {}

  def record_storage(storage_type: _StorageType, key: str, numel: int, pid: tuple):
    if len(pid) > 5 and pid[5] is not None:
      raise TorchFileError('legacy storage views are not supported')
    storages[key] = (storage_type, numel)
    return _PendingStorage(key)

  obj = _unpickle(stream, record_storage, tensors)
  keys = plain_load()
  loaded = _read_legacy_storages(data, stream.tell(), keys, storages)

  def resolve(pending: _PendingTensor) -> np.ndarray:
    if pending.storage.key not in loaded:
      raise TorchFileError(f'storage {pending.storage.key!r} is never written')
    return tensors.materialise(loaded[pending.storage.key], *pending.layout)

  return _as_plain(obj, resolve)


def _one_line(text: str, limit: int = 600) -> str:
  text = ' '.join(text.split())
  return text if len(text) <= limit else text[: limit - 1] + '…'


@contextlib.contextmanager
def _errors_name(path: str):
  """Makes every error of reading `path` a one-line `TorchFileError` that starts with it."""
  try:
    yield
  except TorchFileError as e:
    raise type(e)(_one_line(f'{path}: {e}')) from e
  except RecursionError as e:
    raise TorchFileError(f'{path}: objects nested too deeply to read') from e


def _read_head(path: str, expected: str) -> bytes:
  with open(path, 'rb') as f:
    head = f.read(8)
  if not head:
    raise TorchFileError(f'empty file (0 bytes); expected {expected}')
  return head


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
    TorchFileError: the file is empty, truncated, corrupt, not a torch save file,
      or asks for more memory or nesting than the limits above allow.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'no such PyTorch file: {path}')
  with _errors_name(path):
    head = _read_head(path, 'a PyTorch save file (zip or legacy pickle)')
    tensors = _Tensors(_Allowance())
    if head.startswith(_ZIP_SIGNATURES):
      return _as_plain(_load_zip(path, os.path.getsize(path), tensors))
    if head[:1] in (pickle.PROTO, pickle.LONG):  # Protocol ≥ 2, or the magic number in 0/1.
      with open(path, 'rb') as f:
        return _load_legacy(f.read(), tensors)
    raise TorchFileError(
      f'not a PyTorch save file (starts with bytes {head.hex(" ")}; '
      'expected a zip archive or a pickle)'
    )


def _no_persistent_ids(storage_type, key, numel, pid):
  raise UnsafeFileError(f'unexpected persistent id {_describe(pid)} in a plain pickle')


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
    TorchFileError: the file is empty, truncated or not a pickle, or exceeds the limits above.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'no such pickle file: {path}')
  with _errors_name(path):
    _read_head(path, 'a pickle')
    with open(path, 'rb') as f:
      stream = io.BytesIO(f.read())
    tensors = _Tensors(_Allowance())
    return _as_plain(_unpickle(stream, _no_persistent_ids, tensors, encoding))

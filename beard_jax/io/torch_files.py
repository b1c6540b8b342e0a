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

This module reads the two containers and holds the public API and the limits;
the pickles inside are read by `safe_unpickle` (the allow-list and its checks,
with `numpy_pickles` for numpy's objects) and their tensors rebuilt by
`torch_tensors` within the file's `Allowance`; the errors live in `file_errors`.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import struct
import zipfile
import zlib
from typing import Any

import numpy as np

from beard_jax.io.file_errors import TorchFileError, UnsafeFileError, describe, exception_text
from beard_jax.io.safe_unpickle import as_plain, unpickle
from beard_jax.io.torch_tensors import (
  Allowance,
  PendingStorage,
  PendingTensor,
  StorageType,
  Tensors,
)

__all__ = [
  'MAX_BROADCAST_BYTES',
  'MAX_COMPRESSION_RATIO',
  'MAX_MATERIALISED_BYTES',
  'MAX_NESTING_DEPTH',
  'TorchFileError',
  'UnsafeFileError',
  'load_pickle_file',
  'load_torch_file',
]

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

_ZIP_SIGNATURES = (b'PK\x03\x04', b'PK\x05\x06')
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


def _new_tensors() -> Tensors:
  """The tensor builder of one file, with a fresh allowance of this module's limits."""
  return Tensors(Allowance(MAX_MATERIALISED_BYTES, MAX_BROADCAST_BYTES))


def _read_member(
  archive: zipfile.ZipFile, info: zipfile.ZipInfo, file_size: int, allowance: Allowance
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
    raise TorchFileError(f'zip member {name!r} is damaged: {exception_text(e)}') from e
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
      f'damaged zip archive ({file_size:,} bytes): {exception_text(e)}; '
      'expected a zip file written by torch.save'
    ) from e
  if archive is None:
    raise TorchFileError(
      f'truncated or damaged zip archive: its {file_size:,} bytes start like a zip file but do '
      'not end with the end-of-central-directory record that closes a complete one'
    )
  return archive


def _load_zip(path: str, file_size: int, tensors: Tensors) -> Any:
  """The object of a torch ≥ 1.6 zip file: `<prefix>/data.pkl` and `<prefix>/data/<key>`."""
  with _open_zip(path, file_size) as archive:
    infos = {info.filename: info for info in archive.infolist()}
    pickles = [n for n in infos if n.endswith('/data.pkl') or n == 'data.pkl']
    if len(pickles) != 1:
      found = describe(pickles)
      raise TorchFileError(f'a torch zip file holds exactly one data.pkl, found {found}')
    prefix = pickles[0][: -len('data.pkl')]

    def read(name: str) -> bytes:
      return _read_member(archive, infos[name], file_size, tensors.allowance)

    if prefix + 'byteorder' in infos and read(prefix + 'byteorder').strip() != b'little':
      raise TorchFileError('big-endian torch files are not supported')
    cache: dict[str, np.ndarray] = {}

    def load_storage(storage_type: StorageType, key: str, numel: int, pid: tuple) -> np.ndarray:
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

    return unpickle(io.BytesIO(read(pickles[0])), load_storage, tensors, MAX_NESTING_DEPTH)


def _no_storage(storage_type, key, numel, pid):
  raise TorchFileError(f'unexpected storage {describe(pid)} in a header record')


def _check_int(value: Any, expected: int, what: str) -> None:
  if type(value) is not int or value != expected:
    raise TorchFileError(
      f'a pickle whose {what} is {describe(value)}, not {expected}; '
      'expected a file written by torch.save'
    )


def _read_legacy_storages(data: bytes, offset: int, keys: Any, storages: dict) -> dict:
  """The raw storages that follow a legacy pickle: per key, int64 numel, then the elements."""
  if not isinstance(keys, list) or not all(type(k) is str for k in keys):
    raise TorchFileError(f'legacy storage keys {describe(keys)}; expected a list of strings')
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


def _load_legacy(data: bytes, tensors: Tensors) -> Any:
  """The pre-1.6 format: magic, protocol, sys-info pickles, object, keys, raw storages."""
  stream = io.BytesIO(data)

  def plain_load():
    return unpickle(stream, _no_storage, tensors, MAX_NESTING_DEPTH)

  _check_int(plain_load(), _LEGACY_MAGIC, 'first value (the legacy magic number)')
  _check_int(plain_load(), _LEGACY_PROTOCOL, 'protocol version')
  plain_load()  # sys_info: endianness and type sizes, all plain values.
  storages: dict[str, tuple[StorageType, int]] = {}

  def record_storage(storage_type: StorageType, key: str, numel: int, pid: tuple):
    if len(pid) > 5 and pid[5] is not None:
      raise TorchFileError('legacy storage views are not supported')
    storages[key] = (storage_type, numel)
    return PendingStorage(key)

  obj = unpickle(stream, record_storage, tensors, MAX_NESTING_DEPTH)
  keys = plain_load()
  loaded = _read_legacy_storages(data, stream.tell(), keys, storages)

  def resolve(pending: PendingTensor) -> np.ndarray:
    if pending.storage.key not in loaded:
      raise TorchFileError(f'storage {pending.storage.key!r} is never written')
    return tensors.materialise(loaded[pending.storage.key], *pending.layout)

  return as_plain(obj, MAX_NESTING_DEPTH, resolve)


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
    tensors = _new_tensors()
    if head.startswith(_ZIP_SIGNATURES):
      return as_plain(_load_zip(path, os.path.getsize(path), tensors), MAX_NESTING_DEPTH)
    if head[:1] in (pickle.PROTO, pickle.LONG):  # Protocol ≥ 2, or the magic number in 0/1.
      with open(path, 'rb') as f:
        return _load_legacy(f.read(), tensors)
    raise TorchFileError(
      f'not a PyTorch save file (starts with bytes {head.hex(" ")}; '
      'expected a zip archive or a pickle)'
    )


def _no_persistent_ids(storage_type, key, numel, pid):
  raise UnsafeFileError(f'unexpected persistent id {describe(pid)} in a plain pickle')


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
    tensors = _new_tensors()
    obj = unpickle(stream, _no_persistent_ids, tensors, MAX_NESTING_DEPTH, encoding)
    return as_plain(obj, MAX_NESTING_DEPTH)

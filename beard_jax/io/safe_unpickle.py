"""A restricted unpickler: pickles become plain values, and no pickled code runs.

Unpickling runs whatever callables a pickle names. `unpickle` resolves only an
allow-list of globals (`ALLOWED_GLOBALS`, plus the tensor rebuilders of the
file's `Tensors`), each mapped to a function of our own that builds a plain
value; anything else (`os.system`, `builtins.eval`, an arbitrary class, …)
raises `UnsafeFileError` before it is called. It guarantees that:

  * the pickle `BUILD` opcode (which sets attributes or calls `__setstate__`)
    applies only to numpy arrays, plain numpy dtypes and state dicts, each state
    checked first, so a file cannot alter the allow-listed objects themselves and
    corrupt later loads;
  * persistent ids must be torch storage records, handed to the caller's
    `load_storage`; opcodes pickle does not know are refused;
  * tuples nest at most `max_depth` levels, and `as_plain` refuses containers
    nested deeper or holding themselves, so neither hashing nor conversion can
    overflow the stack;
  * BYTEARRAY8 allocates no more than the bytes the stream holds;
  * every failure, pickle's own included, is a one-line `TorchFileError` that
    says where in the stream it happened.
"""

from __future__ import annotations

import io
import pickle
import struct
from typing import Any

import numpy as np

from beard_jax.io.file_errors import TorchFileError, UnsafeFileError, describe, exception_text
from beard_jax.io.numpy_pickles import (
  NUMPY_GLOBALS,
  NUMPY_MODULES,
  check_array_state,
  check_dtype_state,
)
from beard_jax.io.torch_tensors import (
  STORAGE_DTYPES,
  PendingTensor,
  StorageType,
  Tensors,
  rebuild_parameter,
)


class _StateDict(dict):
  """`collections.OrderedDict` as torch pickles it: a dict whose BUILD sets `_metadata`."""

  def __setstate__(self, state):
    if not isinstance(state, dict):
      raise UnsafeFileError(f'unexpected OrderedDict state of type {type(state).__name__}')
    self.metadata = state.get('_metadata')


def _codecs_encode(text, encoding='utf-8'):
  """`_codecs.encode`, which protocol-2 pickles use for bytes: latin-1 only."""
  if encoding not in ('latin1', 'latin-1'):
    raise UnsafeFileError(f'_codecs.encode with encoding {describe(encoding)} is not expected')
  return text.encode('latin1')


ALLOWED_GLOBALS = {
  ('collections', 'OrderedDict'): _StateDict,
  ('torch._utils', '_rebuild_parameter'): rebuild_parameter,
  ('_codecs', 'encode'): _codecs_encode,
  ('builtins', 'set'): set,
  ('builtins', 'frozenset'): frozenset,
  ('__builtin__', 'set'): set,
  ('__builtin__', 'frozenset'): frozenset,
}
for _module in NUMPY_MODULES:
  for _name, _fn in NUMPY_GLOBALS.items():
    ALLOWED_GLOBALS[(_module, _name)] = _fn
for _name in STORAGE_DTYPES:
  ALLOWED_GLOBALS[('torch', _name)] = StorageType(_name)
# Resolved per file, to the `Tensors.rebuild` that holds that file's allowance.
_TENSOR_GLOBALS = (('torch._utils', '_rebuild_tensor_v2'), ('torch._utils', '_rebuild_tensor'))

# The only objects whose state a pickle may set (BUILD), each with its check.
_BUILD_CHECKS = {np.ndarray: check_array_state, np.dtype: check_dtype_state, _StateDict: None}
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
  """An unpickler that resolves only `ALLOWED_GLOBALS` and reads storages lazily.

  It is the pure-Python unpickler so that `BUILD` can be restricted to
  `_BUILD_CHECKS`' types (the C one would let a pickle set attributes on the
  allow-listed functions and storage types themselves) and tuple nesting can be
  bounded: hashing a tuple nested a million deep overflows the C stack.
  """

  dispatch = dict(pickle._Unpickler.dispatch)

  def __init__(self, stream, load_storage, tensors: Tensors, max_depth: int, encoding: str):
    super().__init__(stream, encoding=encoding)
    self.stream = stream
    self._load_storage = load_storage
    self._tensors = tensors
    self._max_depth = max_depth
    self._tuple_depths: dict[int, tuple[tuple, int]] = {}  # id -> (tuple kept alive, depth)

  def check_tuple_depth(self, new: tuple) -> None:
    depths = (self._tuple_depths.get(id(e), (e, 1))[1] for e in new if type(e) is tuple)
    depth = 1 + max(depths, default=0)
    if depth > self._max_depth:
      raise TorchFileError(f'tuples are nested more than {self._max_depth} levels deep')
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
    if (module, name) in ALLOWED_GLOBALS:
      return ALLOWED_GLOBALS[(module, name)]
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
      and isinstance(pid[1], StorageType)
      and type(pid[2]) is str
      and type(pid[4]) is int
      and pid[4] >= 0
    ):
      raise UnsafeFileError(
        f'refusing to load: unexpected persistent id {describe(pid)}; expected '
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


def unpickle(
  stream: io.BytesIO, load_storage, tensors: Tensors, max_depth: int, encoding: str = 'ASCII'
) -> Any:
  """One pickle from `stream`, read under the allow-list.

  Args:
    stream: the pickle's bytes, read from the current position; left after its STOP.
    load_storage: `(storage_type, key, numel, pid) -> storage` for each storage
      record the pickle names; it may refuse by raising `TorchFileError`.
    tensors: the file's tensor builder, which holds its allowance.
    max_depth: how deep tuples may nest.
    encoding: how Python 2 `str` objects are decoded, as in `pickle.load`.

  Returns:
    The unpickled object, still holding the loader's types (see `as_plain`).

  Raises:
    UnsafeFileError: the pickle asks for a global, a BUILD or a persistent id
      outside the allow-list.
    TorchFileError: anything else that is wrong, with the byte offset where
      pickle's own errors happened.
  """
  try:
    return _RestrictedUnpickler(stream, load_storage, tensors, max_depth, encoding).load()
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
    raise TorchFileError(f'corrupt pickle at byte {at:,} of {size:,}: {exception_text(e)}') from e


_IN_PROGRESS = object()


def as_plain(obj: Any, max_depth: int, resolve_pending=None) -> Any:
  """Plain dicts, lists and tuples in place of the loader's types; pending tensors resolved.

  Each container is converted once (shared ones stay shared); a container that
  holds itself, or nesting deeper than `max_depth`, is refused.
  """
  converted: dict[int, Any] = {}

  def convert(value, depth):
    if not isinstance(value, dict | list | tuple | PendingTensor):
      return value
    done = converted.get(id(value))
    if done is _IN_PROGRESS:
      raise TorchFileError('a container holds itself; expected a tree of dicts, lists, tensors')
    if done is not None:
      return done
    if depth > max_depth:
      raise TorchFileError(f'containers are nested more than {max_depth} levels deep')
    converted[id(value)] = _IN_PROGRESS
    if isinstance(value, PendingTensor):
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

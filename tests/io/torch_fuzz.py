"""Feeds `load_torch_file` mutated real files under a memory limit (run as a script).

`python tests/io/torch_fuzz.py --count N --seed S --workdir DIR SOURCE...` caps
its address space (`--memory-gib`, RLIMIT_AS), then loads N mutants of the
SOURCE files, seeded and deterministic: mutant i of the seed is a function of
(seed, i) alone. Every load must either succeed or raise a one-line
`TorchFileError` that starts with the mutant's path; anything else (MemoryError,
RecursionError, another exception type, a load that runs past `--timeout-s`) is a
failure. It prints one JSON object: counts per mutation and outcome, failures
(with the seed and index that rebuild the mutant), seconds and peak RSS.

Mutations, each aimed at a declared size or a structure the reader must check:
  * `truncate`: cut the file, often inside its first or last 4 kB;
  * `flip`: XOR 1-16 bytes, mostly in the pickle or the zip directory;
  * `zip_field`: set a size, offset or count of the zip's central directory,
    end records or a local header to an extreme or off-by-some value;
  * `pickle_int`: set 1-3 integer arguments of the object pickle (tensor sizes,
    strides, offsets, storage element counts) to extreme values;
  * `pickle_bytes`: overwrite, delete, insert or repeat bytes of the pickle;
  * `legacy_numel`: set a legacy storage's element-count header.
Pickle mutations of a zip file rebuild the zip around the new `data.pkl`, so its
CRC holds and the unpickler sees the mutation.
"""

from __future__ import annotations

import argparse
import io
import json
import pathlib
import pickletools
import resource
import signal
import struct
import sys
import time
import zipfile

import numpy as np
import torch_writer as tw

from beard_jax.io import torch_files

_INT_OPCODES = {'BININT1': (b'K', '<B'), 'BININT2': (b'M', '<H'), 'BININT': (b'J', '<i')}
_EXTREMES = (0, 1, 2, 3, 255, 256, 65535, 2**31 - 1, 2**32 - 1, 2**40, 2**62, 2**63 - 1, 2**64)


class _Hang(BaseException):
  """A load that ran past its time limit (BaseException: the reader cannot catch it)."""


class Source:
  """One real file and the positions of its structure, for aimed mutations.

  Attributes:
    name: a short name for reports.
    data: the file's bytes.
    members: for a zip file, [(name, bytes)] in archive order; else None.
    pickle_name: the zip member holding the object pickle, or None (legacy).
    pickle_span: (start, end) of the object pickle in `data` (legacy) or in
      the `data.pkl` member (zip).
    int_ops: [(start, end, opcode name, value)] of the object pickle's integer
      opcodes, offsets relative to the pickle's start.
    numel_offsets: byte offsets in `data` of legacy storage element counts.
  """

  def __init__(self, name: str, data: bytes, numel_offsets=()):
    self.name, self.data, self.numel_offsets = name, data, list(numel_offsets)
    if data[:4] == b'PK\x03\x04':
      with zipfile.ZipFile(io.BytesIO(data)) as archive:
        self.members = [(n, archive.read(n)) for n in archive.namelist()]
      self.pickle_name = next(n for n, _ in self.members if n.endswith('data.pkl'))
      pickle_data = dict(self.members)[self.pickle_name]
      self.pickle_span = (0, len(pickle_data))
    else:
      self.members, self.pickle_name = None, None
      stream = io.BytesIO(data)
      for _ in range(3):  # The magic number, protocol and sys-info pickles.
        _skip_pickle(stream)
      start = stream.tell()
      _skip_pickle(stream)
      self.pickle_span = (start, stream.tell())
      pickle_data = data[start : stream.tell()]
    self.int_ops = _int_ops(pickle_data)

  def object_pickle(self) -> bytes:
    if self.members is not None:
      return dict(self.members)[self.pickle_name]
    return self.data[slice(*self.pickle_span)]

  def with_object_pickle(self, new_pickle: bytes) -> bytes:
    """The file with its object pickle replaced (a zip is rebuilt, CRCs and all)."""
    if self.members is None:
      start, end = self.pickle_span
      return self.data[:start] + new_pickle + self.data[end:]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w') as archive:
      for name, member in self.members:
        archive.writestr(name, new_pickle if name == self.pickle_name else member)
    return buffer.getvalue()


def _skip_pickle(stream: io.BytesIO) -> None:
  for opcode, _, _ in pickletools.genops(stream):
    if opcode.name == 'STOP':
      return


def _int_ops(pickle_data: bytes) -> list[tuple[int, int, str, int]]:
  ops = list(pickletools.genops(pickle_data))
  ends = [pos for _, _, pos in ops[1:]] + [len(pickle_data)]
  return [
    (pos, end, op.name, arg)
    for (op, arg, pos), end in zip(ops, ends, strict=True)
    if op.name in _INT_OPCODES or op.name == 'LONG1'
  ]


def _position(rng: np.random.Generator, size: int) -> int:
  """A byte offset: uniform, or in the first or last 4 kB, where the structure is."""
  region = rng.integers(3)
  if region == 0:
    return int(rng.integers(size))
  if region == 1:
    return int(rng.integers(min(size, 4096)))
  return int(size - 1 - rng.integers(min(size, 4096)))


def truncate(rng, source: Source) -> bytes:
  return source.data[: _position(rng, len(source.data))]


def flip(rng, source: Source) -> bytes:
  data = bytearray(source.data)
  for _ in range(int(rng.integers(1, 17))):
    data[_position(rng, len(data))] ^= int(rng.integers(1, 256))
  return bytes(data)


def _extreme(rng, original: int) -> int:
  if rng.integers(2):
    return int(rng.choice(_EXTREMES))
  return original + int(rng.integers(-64, 65)) * int(rng.choice([1, 4, 8, 4096]))


# (signature, {field offset: struct format}) of the zip records whose sizes matter.
_ZIP_RECORDS = (
  (b'PK\x01\x02', {10: '<H', 20: '<I', 24: '<I', 28: '<H', 30: '<H', 42: '<I'}),
  (b'PK\x03\x04', {8: '<H', 18: '<I', 22: '<I', 26: '<H', 28: '<H'}),
  (b'PK\x05\x06', {8: '<H', 10: '<H', 12: '<I', 16: '<I', 20: '<H'}),
  (b'PK\x06\x06', {24: '<Q', 32: '<Q', 40: '<Q', 48: '<Q'}),
  (b'PK\x06\x07', {8: '<Q'}),
)


def zip_field(rng, source: Source) -> bytes:
  data = bytearray(source.data)
  signature, fields = _ZIP_RECORDS[int(rng.integers(len(_ZIP_RECORDS)))]
  starts = []
  start = data.find(signature)
  while start >= 0:
    starts.append(start)
    start = data.find(signature, start + 1)
  if not starts:
    return flip(rng, source)
  record = starts[int(rng.integers(len(starts)))]
  offset = list(fields)[int(rng.integers(len(fields)))]
  fmt = fields[offset]
  if record + offset + struct.calcsize(fmt) > len(data):
    return bytes(data)
  (original,) = struct.unpack_from(fmt, data, record + offset)
  value = _extreme(rng, original) % 2 ** (8 * struct.calcsize(fmt))
  struct.pack_into(fmt, data, record + offset, value)
  return bytes(data)


def _encode_int(name: str, value: int) -> bytes:
  """`value` as opcode `name` (wrapped to its width), or as LONG1."""
  if name in _INT_OPCODES:
    code, fmt = _INT_OPCODES[name]
    bits = 8 * struct.calcsize(fmt)
    low = -(2 ** (bits - 1)) if fmt == '<i' else 0
    return code + struct.pack(fmt, (value - low) % 2**bits + low)
  length = min(255, (value.bit_length() + 8) // 8) if value else 0
  body = (value % 2 ** (8 * length)).to_bytes(length, 'little') if length else b''
  return b'\x8a' + bytes([length]) + body


def pickle_int(rng, source: Source) -> bytes:
  original = source.object_pickle()
  chosen = sorted(
    rng.choice(len(source.int_ops), size=min(3, int(rng.integers(1, 4))), replace=False),
    reverse=True,
  )
  data = original
  for index in chosen:  # From the end, so earlier offsets stay valid.
    start, end, name, value = source.int_ops[index]
    data = data[:start] + _encode_int(name, _extreme(rng, value)) + data[end:]
  return source.with_object_pickle(data)


def pickle_bytes(rng, source: Source) -> bytes:
  data = bytearray(source.object_pickle())
  start = int(rng.integers(len(data)))
  length = int(rng.integers(1, 33))
  action = int(rng.integers(4))
  if action == 0:
    data[start : start + length] = rng.integers(0, 256, size=length, dtype=np.uint8).tobytes()
  elif action == 1:
    del data[start : start + length]
  elif action == 2:
    data[start:start] = rng.integers(0, 256, size=length, dtype=np.uint8).tobytes()
  else:
    chunk = data[start : start + 16 * length]
    data[start:start] = chunk * int(rng.integers(1, 64))
  return source.with_object_pickle(bytes(data))


def legacy_numel(rng, source: Source) -> bytes:
  data = bytearray(source.data)
  offset = source.numel_offsets[int(rng.integers(len(source.numel_offsets)))]
  (original,) = struct.unpack_from('<q', data, offset)
  struct.pack_into('<Q', data, offset, _extreme(rng, original) % 2**64)
  return bytes(data)


def mutations_for(source: Source) -> dict:
  mutations = {'truncate': truncate, 'flip': flip, 'pickle_bytes': pickle_bytes}
  if source.int_ops:
    mutations['pickle_int'] = pickle_int
  if source.members is not None:
    mutations['zip_field'] = zip_field
  if source.numel_offsets:
    mutations['legacy_numel'] = legacy_numel
  return mutations


def mutant(seed: int, index: int, sources: list[Source]) -> tuple[str, bytes]:
  """Mutant `index` of `seed`: (a description, the bytes)."""
  rng = np.random.default_rng([seed, index])
  source = sources[index % len(sources)]
  mutations = mutations_for(source)
  kind = list(mutations)[int(rng.integers(len(mutations)))]
  return f'{source.name}/{kind}', mutations[kind](rng, source)


def _check_one(path: pathlib.Path, timeout_s: int) -> str:
  """`loaded`, `refused` (a well-formed TorchFileError), or what went wrong."""
  signal.alarm(timeout_s)
  try:
    torch_files.load_torch_file(path)
  except torch_files.TorchFileError as e:
    message = str(e)
    if not message.startswith(f'{path}: ') or '\n' in message:
      return f'badly formed message: {message[:300]!r}'
    return 'refused'
  except _Hang:
    return f'no result after {timeout_s} s'
  except Exception as e:  # Any other type is the failure this looks for.
    return f'{type(e).__name__}: {str(e)[:300]}'
  finally:
    signal.alarm(0)
  return 'loaded'


def run(sources: list[Source], count: int, seed: int, workdir: pathlib.Path, timeout_s: int):
  """Loads `count` mutants of `sources` in turn; the report described in the module docstring."""

  def on_alarm(signum, frame):
    raise _Hang

  signal.signal(signal.SIGALRM, on_alarm)
  counts: dict[str, int] = {}
  failures = []
  path = workdir / 'mutant.pt'
  start = time.perf_counter()
  for index in range(count):
    what, data = mutant(seed, index, sources)
    path.write_bytes(data)
    outcome = _check_one(path, timeout_s)
    if outcome not in ('loaded', 'refused'):
      failures.append({'index': index, 'seed': seed, 'mutation': what, 'error': outcome})
      outcome = 'failed'
    counts[f'{what}:{outcome}'] = counts.get(f'{what}:{outcome}', 0) + 1
  return {
    'count': count,
    'counts': dict(sorted(counts.items())),
    'failures': failures[:20],
    'failure_count': len(failures),
    'seconds': time.perf_counter() - start,
    'peak_rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
  }


def legacy_source(name: str, obj, path: pathlib.Path) -> Source:
  """`obj` (arrays as tensors) written in the legacy format, its count headers located."""

  def as_tensors(value):
    if isinstance(value, np.ndarray):
      return tw.Tensor(value)
    if isinstance(value, dict):
      return {k: as_tensors(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
      return type(value)(as_tensors(v) for v in value)
    return value

  tensors = as_tensors(obj)
  tw.write_torch_legacy(path, tensors)
  _, storages = tw.pickle_bytes(tensors, legacy=True)
  data = path.read_bytes()
  stream = io.BytesIO(data)
  for _ in range(5):  # Three headers, the object, the storage keys.
    _skip_pickle(stream)
  offsets, offset = [], stream.tell()
  for key in sorted(storages):
    offsets.append(offset)
    offset += 8 + storages[key].nbytes
  return Source(name, data, offsets)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('sources', nargs='+', type=pathlib.Path)
  parser.add_argument('--count', type=int, default=5000)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--workdir', type=pathlib.Path, required=True)
  parser.add_argument('--memory-gib', type=float, default=3.0)
  parser.add_argument('--timeout-s', type=int, default=30)
  args = parser.parse_args(argv)
  limit = int(args.memory_gib * 1024**3)
  resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
  sources = [Source(p.name, p.read_bytes()) for p in args.sources]
  dataset = torch_files.load_torch_file(args.sources[0])
  sources.append(legacy_source('legacy-' + args.sources[0].name, dataset, args.workdir / 'l.pt'))
  report = run(sources, args.count, args.seed, args.workdir, args.timeout_s)
  json.dump(report, sys.stdout)


if __name__ == '__main__':
  main()

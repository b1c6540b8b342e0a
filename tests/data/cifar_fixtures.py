"""Writes small CIFAR folders in the exact official on-disk format, for tests.

The official batches are Python 2 cPickle protocol-2 dumps: dict keys and
strings are py2 `str` (the SHORT_BINSTRING/BINSTRING opcodes, read back as bytes
with `encoding='bytes'`), `data` is a numpy uint8 [N, 3072] array pickled through
`numpy.core.multiarray._reconstruct`, labels are a list of ints. Python 3's
pickler cannot write py2 strings, so the opcodes are emitted here by hand.
"""

from __future__ import annotations

import pathlib
import struct

import numpy as np


def _string(value: bytes) -> bytes:
  if len(value) < 256:
    return b'U' + bytes([len(value)]) + value  # SHORT_BINSTRING
  return b'T' + struct.pack('<i', len(value)) + value  # BINSTRING


def _int(value: int) -> bytes:
  if 0 <= value < 256:
    return b'K' + bytes([value])  # BININT1
  return b'J' + struct.pack('<i', value)  # BININT


def _array(array: np.ndarray) -> bytes:
  assert array.dtype == np.uint8
  shape = b'(' + b''.join(_int(n) for n in array.shape) + b't'
  dtype = (
    b'cnumpy\ndtype\n'
    + _string(b'u1')
    + _int(0)
    + _int(1)
    + b'\x87R'  # TUPLE3, REDUCE
    + b'('
    + _int(3)
    + _string(b'|')
    + b'NNN'
    + b'J\xff\xff\xff\xffJ\xff\xff\xff\xff'
    + _int(0)
    + b'tb'  # state tuple, BUILD
  )
  return (
    b'cnumpy.core.multiarray\n_reconstruct\n'
    + b'cnumpy\nndarray\n'
    + _int(0)
    + b'\x85'
    + _string(b'b')
    + b'\x87R'
    + b'('
    + _int(1)
    + shape
    + dtype
    + b'\x89'
    + _string(array.tobytes())
    + b'tb'
  )


def _value(value) -> bytes:
  if isinstance(value, np.ndarray):
    return _array(value)
  if isinstance(value, bytes):
    return _string(value)
  if isinstance(value, int):
    return _int(value)
  if isinstance(value, list):
    return b']' + (b'(' + b''.join(_value(v) for v in value) + b'e' if value else b'')
  raise TypeError(type(value))


def py2_pickle(batch: dict) -> bytes:
  """A dict with bytes keys as Python 2's cPickle.dump(batch, f, 2) writes it."""
  body = b''.join(_string(k) + _value(v) for k, v in batch.items())
  return b'\x80\x02}(' + body + b'u.'


def random_batch(rng, count: int, num_classes: int):
  """uint8 data [count, 3072] and labels covering the classes."""
  data = rng.integers(0, 256, size=(count, 3072), dtype=np.uint8)
  labels = [int(v) for v in rng.permutation(np.arange(count) % num_classes)]
  return data, labels


def write_cifar10(root: pathlib.Path, per_batch: int = 20, seed: int = 0):
  """Writes root/cifar-10-batches-py; returns {split: (data, labels)} as written."""
  rng = np.random.default_rng(seed)
  folder = root / 'cifar-10-batches-py'
  folder.mkdir(parents=True)
  written = {'train': [], 'test': []}
  for file, split in [(f'data_batch_{i}', 'train') for i in range(1, 6)] + [('test_batch', 'test')]:
    data, labels = random_batch(rng, per_batch, 10)
    batch = {
      b'batch_label': file.encode(),
      b'labels': labels,
      b'data': data,
      b'filenames': [f'img_{i}.png'.encode() for i in range(per_batch)],
    }
    (folder / file).write_bytes(py2_pickle(batch))
    written[split].append((data, labels))
  names = [
    b'airplane',
    b'automobile',
    b'bird',
    b'cat',
    b'deer',
    b'dog',
    b'frog',
    b'horse',
    b'ship',
    b'truck',
  ]
  meta = {b'num_cases_per_batch': per_batch, b'label_names': names, b'num_vis': 3072}
  (folder / 'batches.meta').write_bytes(py2_pickle(meta))
  return {
    s: (np.concatenate([d for d, _ in parts]), np.concatenate([y for _, y in parts]))
    for s, parts in written.items()
  }


def write_cifar100(root: pathlib.Path, count: int = 200, seed: int = 1):
  """Writes root/cifar-100-python; returns {split: (data, fine_labels)} as written."""
  rng = np.random.default_rng(seed)
  folder = root / 'cifar-100-python'
  folder.mkdir(parents=True)
  written = {}
  for split in ('train', 'test'):
    data, fine = random_batch(rng, count, 100)
    batch = {
      b'filenames': [b'x.png'] * count,
      b'batch_label': split.encode(),
      b'fine_labels': fine,
      b'coarse_labels': [f // 5 for f in fine],
      b'data': data,
    }
    (folder / split).write_bytes(py2_pickle(batch))
    written[split] = (data, np.array(fine))
  meta = {
    b'fine_label_names': [f'fine{i:02d}'.encode() for i in range(100)],
    b'coarse_label_names': [f'coarse{i:02d}'.encode() for i in range(20)],
  }
  (folder / 'meta').write_bytes(py2_pickle(meta))
  return written

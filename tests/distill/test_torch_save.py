"""beard_jax.io.torch_save: files that real `torch.load(weights_only=True)` reads identically."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from beard_jax.io import torch_files
from beard_jax.io.torch_save import save_torch_file, torch_file_bytes

torch = pytest.importorskip('torch')


def _sample_object(rng):
  images = rng.normal(size=(4, 3, 8, 8)).astype(np.float32)
  return {
    'data': [[images, np.arange(4, dtype=np.int64)]],
    'accs_all_exps': {},
    'strided': images.transpose(0, 2, 3, 1),  # Not contiguous: saved as a contiguous copy.
    'dtypes': [
      np.arange(5, dtype=np.uint8),
      np.array([True, False]),
      np.arange(3, dtype=np.int32),
      np.linspace(0, 1, 3),
      np.zeros((0, 2), np.float32),
      np.array(2.5, np.float32),  # 0-d.
    ],
    'scalars': (0, -5, 2**31, -(2**40), 0.25, float('inf'), True, None, 'ünïcode', np.float64(1.5)),
    'nested': {'empty_list': [], 'empty_tuple': (), 'deep': {'x': [1, [2, [3]]]}},
  }


def _assert_same(ours, theirs):
  """`theirs` (torch.load) equals `ours` (numpy and plain values), dtypes included."""
  if isinstance(ours, np.ndarray):
    assert isinstance(theirs, torch.Tensor)
    np.testing.assert_array_equal(theirs.numpy(), ours)
    assert theirs.numpy().dtype == ours.dtype and tuple(theirs.shape) == ours.shape
  elif isinstance(ours, dict):
    assert isinstance(theirs, dict) and list(theirs) == list(ours)
    for name in ours:
      _assert_same(ours[name], theirs[name])
  elif isinstance(ours, list | tuple):
    assert type(theirs) is type(ours) and len(theirs) == len(ours)
    for a, b in zip(ours, theirs, strict=True):
      _assert_same(a, b)
  else:
    assert theirs == ours and type(theirs) is type(ours.item() if hasattr(ours, 'item') else ours)


def test_torch_load_reads_what_we_write(tmp_path):
  obj = _sample_object(np.random.default_rng(0))
  path = tmp_path / 'set.pt'
  save_torch_file(path, obj)
  _assert_same(obj, torch.load(path, weights_only=True))
  _assert_same(obj, torch.load(path, weights_only=True, mmap=True))  # 64-byte aligned storages.
  ours = torch_files.load_torch_file(path)  # The project's own reader agrees.
  np.testing.assert_array_equal(ours['data'][0][0], obj['data'][0][0])
  np.testing.assert_array_equal(ours['strided'], obj['strided'])
  assert ours['scalars'][2] == 2**31 and ours['nested']['deep'] == {'x': [1, [2, [3]]]}


def test_layout_and_determinism(tmp_path):
  obj = _sample_object(np.random.default_rng(1))
  assert torch_file_bytes(obj) == torch_file_bytes(obj)
  path = tmp_path / 'set.pt'
  save_torch_file(path, obj)
  with zipfile.ZipFile(path) as archive:
    names = archive.namelist()
    assert names[0] == 'archive/data.pkl' and names[-1] == 'archive/version'
    assert archive.read('archive/byteorder') == b'little'
    assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
    storages = [info for info in archive.infolist() if info.filename.startswith('archive/data/')]
    assert len(storages) == 9
  raw = path.read_bytes()
  for info in storages:  # Every storage starts at a multiple of 64 bytes.
    start = (
      info.header_offset
      + 30
      + len(info.filename)
      + int.from_bytes(raw[info.header_offset + 28 : info.header_offset + 30], 'little')
    )
    assert start % 64 == 0


def test_matches_torch_save_of_the_same_dataset_file(tmp_path, real_data_path):
  """A real DC pool file, re-written by us, loads to the same tensors as the original."""
  original = real_data_path('dataset_pool/DC/res_DC_CIFAR10_ConvNet_1ipc_3000.pt')
  content = torch_files.load_torch_file(original)
  ours = tmp_path / 'res_DC_CIFAR10_ConvNet_1ipc.pt'
  save_torch_file(ours, {'data': content['data'], 'accs_all_exps': {}})
  reference = torch.load(original, weights_only=False, map_location='cpu')['data']
  reloaded = torch.load(ours, weights_only=True)['data']
  for (ref_x, ref_y), (x, y) in zip(reference, reloaded, strict=True):
    assert torch.equal(ref_x, x) and torch.equal(ref_y, y) and x.dtype == ref_x.dtype


@pytest.mark.parametrize(
  'bad, message',
  [
    ({'x': object()}, 'cannot save object'),
    ({1: 2}, 'keys must be str'),
    ({'x': np.zeros(2, np.complex64)}, 'no torch storage'),
    ({'x': np.zeros(2, np.uint16)}, 'no torch storage'),
  ],
)
def test_refuses_what_torch_would_not_rebuild(bad, message):
  with pytest.raises(TypeError, match=message):
    torch_file_bytes(bad)

"""Tiny hostile torch files cannot exhaust memory or recursion; real views still load.

Each refusal tested here failed before the limits existed: the file loaded
(allocating hundreds of megabytes from a few hundred bytes), raised MemoryError or
a bare RecursionError, or crashed the interpreter. The tests that load real views
and fairly compressed members guard against refusing too much.
"""

import os
import pathlib
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch_writer as tw

from beard_jax.io import torch_files
from beard_jax.io.torch_files import TorchFileError, UnsafeFileError

_REPO = pathlib.Path(__file__).resolve().parents[2]
WRITERS = {'zip': tw.write_torch_zip, 'legacy': tw.write_torch_legacy}


def _zip_with_pickle(path, data_pkl: bytes) -> None:
  with zipfile.ZipFile(path, 'w') as archive:
    archive.writestr('archive/data.pkl', data_pkl)


def _nested_lists(depth: int) -> bytes:
  """Protocol-2 opcodes of a list nested `depth` deep: EMPTY_LIST × depth, APPEND × depth-1."""
  return b'\x80\x02' + b']' * depth + b'a' * (depth - 1)


@pytest.mark.parametrize('writer', list(WRITERS))
def test_a_stride0_view_cannot_blow_up(tmp_path, writer):
  # One stored float viewed as [4096, 4096, 4] with stride 0: 256 MiB from < 1 kB.
  path = tmp_path / 'broadcast.pt'
  WRITERS[writer](path, tw.View(np.ones(1, np.float32), (4096, 4096, 4), (0, 0, 0)))
  assert path.stat().st_size < 1024
  with pytest.raises(TorchFileError, match=r'broadcast\.pt: .*stride-0.*MAX_BROADCAST_BYTES'):
    torch_files.load_torch_file(path)


def test_many_small_stride0_views_share_one_allowance(tmp_path):
  # Each view is 16 MiB, under the limit alone; five of them are not.
  one = np.ones(1, np.float32)
  path = tmp_path / 'broadcasts.pt'
  tw.write_torch_zip(path, [tw.View(one, (2048, 2048), (0, 0)) for _ in range(5)])
  assert path.stat().st_size < 2048
  with pytest.raises(TorchFileError, match='MAX_BROADCAST_BYTES'):
    torch_files.load_torch_file(path)


@pytest.mark.parametrize('writer', list(WRITERS))
def test_real_views_still_load(tmp_path, writer):
  base = np.arange(12, dtype=np.float32)
  obj = {
    'expanded': tw.View(np.array([1, 2, 3], np.float32), (3, 4), (1, 0)),
    'transposed': tw.View(base, (4, 3), (1, 4)),
    'shared': [
      tw.View(base, (12,), (1,)),
      tw.View(base, (3, 4), (4, 1)),
      tw.View(base, (2,), (1,), 10),
    ],
    'empty': tw.View(base, (0, 2**40), (1, 1)),
  }
  path = tmp_path / 'views.pt'
  WRITERS[writer](path, obj)
  loaded = torch_files.load_torch_file(path)
  np.testing.assert_array_equal(loaded['expanded'], np.repeat([[1.0], [2.0], [3.0]], 4, axis=1))
  np.testing.assert_array_equal(loaded['transposed'], base.reshape(3, 4).T)
  np.testing.assert_array_equal(loaded['shared'][1], base.reshape(3, 4))
  np.testing.assert_array_equal(loaded['shared'][2], [10.0, 11.0])
  assert loaded['empty'].shape == (0, 2**40)


def test_materialised_bytes_are_capped_per_file(tmp_path, monkeypatch):
  # Many tensors on one 40 kB storage: each fits it, together they pass the cap.
  monkeypatch.setattr(torch_files, 'MAX_MATERIALISED_BYTES', 1_000_000)
  storage = np.zeros(10_000, np.float32)
  fits, too_many = tmp_path / 'fits.pt', tmp_path / 'too_many.pt'
  tw.write_torch_zip(fits, [tw.View(storage, (10_000,), (1,)) for _ in range(20)])
  tw.write_torch_zip(too_many, [tw.View(storage, (10_000,), (1,)) for _ in range(30)])
  assert len(torch_files.load_torch_file(fits)) == 20
  with pytest.raises(TorchFileError, match=r'too_many\.pt: .*MAX_MATERIALISED_BYTES'):
    torch_files.load_torch_file(too_many)


def _reconstruct(shape, state=None):
  """numpy's `_reconstruct(ndarray, shape, b'b')`, then BUILD with `state` if given."""
  function = tw.Global('numpy.core.multiarray', '_reconstruct')
  return tw.Call(function, (tw.Global('numpy', 'ndarray'), shape, b'b'), state)


def test_numpy_reconstruct_cannot_declare_a_huge_array(tmp_path):
  path = tmp_path / 'reconstruct.pt'
  tw.write_torch_zip(path, {'x': _reconstruct((2**40,))})
  with pytest.raises(TorchFileError, match=r'reconstruct\.pt: numpy _reconstruct declares shape'):
    torch_files.load_torch_file(path)


def test_numpy_ndarray_cannot_be_called(tmp_path):
  path = tmp_path / 'ndarray.pt'
  tw.write_torch_zip(path, {'x': tw.Call(tw.Global('numpy', 'ndarray'), ((2**40,),))})
  with pytest.raises(TorchFileError, match=r'ndarray\.pt: corrupt .*not callable'):
    torch_files.load_torch_file(path)


def test_numpy_array_state_must_match_its_data(tmp_path):
  state = (1, (2**40,), np.dtype(np.float64), False, b'\0' * 8)
  path = tmp_path / 'state.pt'
  tw.write_torch_zip(path, _reconstruct((0,), state))
  with pytest.raises(TorchFileError, match=r'needs 8,796,093,022,208 items or bytes, found 8'):
    torch_files.load_torch_file(path)
  numpy_values = {'a': np.arange(6.0).reshape(2, 3), 's': np.float64(0.25)}
  tw.write_torch_zip(path, numpy_values)
  loaded = torch_files.load_torch_file(path)
  np.testing.assert_array_equal(loaded['a'], numpy_values['a'])
  assert loaded['s'] == 0.25


def test_dtype_state_applies_to_a_copy_and_must_be_plain(tmp_path):
  # The BUILD applies to a fresh dtype (numpy ignores state set on its shared
  # built-in ones); structured and non-numeric dtypes are refused.
  dtype = tw.Call(tw.Global('numpy', 'dtype'), ('f8',), state=(3, '>', None, None, None, -1, -1, 0))
  path = tmp_path / 'dtype.pt'
  tw.write_torch_zip(path, dtype)
  assert torch_files.load_torch_file(path).byteorder == '>'
  assert np.dtype('f8').byteorder == '='
  structured_state = (3, '|', None, ('a',), {}, 8, 1, 0)
  for code, match in [('f8', 'only plain numeric dtypes'), ('V8', 'only numeric dtypes')]:
    tw.write_torch_zip(path, tw.Call(tw.Global('numpy', 'dtype'), (code,), structured_state))
    with pytest.raises(TorchFileError, match=match):
      torch_files.load_torch_file(path)


def _legacy_with_numel(path, numel: int) -> None:
  tw.write_torch_legacy(path, tw.Tensor(np.arange(4, dtype=np.float32)))
  raw = path.read_bytes()
  header = struct.pack('<q', 4) + np.arange(4, dtype=np.float32).tobytes()
  start = raw.rindex(header)
  path.write_bytes(raw[:start] + struct.pack('<q', numel) + raw[start + 8 :])


def test_legacy_storage_sizes_are_checked_before_reading(tmp_path):
  path = tmp_path / 'numel.pt'
  _legacy_with_numel(path, 2**40)
  with pytest.raises(TorchFileError, match=r'numel\.pt: storage .* declares 4 elements .*1,099,'):
    torch_files.load_torch_file(path)
  tw.write_torch_legacy(path, tw.Tensor(np.arange(4, dtype=np.float32)))
  path.write_bytes(path.read_bytes()[:-3])
  with pytest.raises(TorchFileError, match=r'truncated file: storage .* needs 16 bytes'):
    torch_files.load_torch_file(path)


def _patch_central_directory(path, member: str, **fields) -> None:
  """Sets `compress_size` / `file_size` of `member`'s central directory entry."""
  raw = bytearray(path.read_bytes())
  entry = raw.index(b'PK\x01\x02')
  while raw[entry + 46 : entry + 46 + len(member)] != member.encode():
    entry = raw.index(b'PK\x01\x02', entry + 1)
  offsets = {'compress_size': 20, 'file_size': 24}
  for name, value in fields.items():
    struct.pack_into('<I', raw, entry + offsets[name], value)
  path.write_bytes(bytes(raw))


def test_zip_declared_sizes_are_checked_before_reading(tmp_path):
  path = tmp_path / 'sizes.pt'
  tensor = tw.Tensor(np.arange(1000, dtype=np.float32))
  tw.write_torch_zip(path, tensor)
  _patch_central_directory(path, 'archive/data.pkl', compress_size=2**31, file_size=2**31)
  with pytest.raises(
    TorchFileError, match=r"sizes\.pt: .*'archive/data.pkl' declares 2,147,483,648"
  ):
    torch_files.load_torch_file(path)
  tw.write_torch_zip(path, tensor)
  _patch_central_directory(path, 'archive/data/0', file_size=8000)
  with pytest.raises(TorchFileError, match=r'1,000 float32 elements \(4,000 bytes\), .* 8,000'):
    torch_files.load_torch_file(path)
  tw.write_torch_zip(path, tensor)
  _patch_central_directory(path, 'archive/data.pkl', file_size=2**30)
  with pytest.raises(TorchFileError, match=r'stored member .* declares 1,073,741,824 bytes'):
    torch_files.load_torch_file(path)


def test_a_zip_bomb_is_refused_before_it_is_inflated(tmp_path):
  # 64 MiB of zeros deflate to ~64 kB: a ratio of ~1000.
  numel = 16 * 2**20
  data_pkl, _ = tw.pickle_bytes(tw.Tensor(np.zeros(numel, np.float32)))
  path = tmp_path / 'bomb.pt'
  with zipfile.ZipFile(path, 'w', compression=zipfile.ZIP_DEFLATED) as archive:
    archive.writestr('archive/data.pkl', data_pkl)
    with archive.open('archive/data/0', 'w') as member:
      for _ in range(64):
        member.write(bytes(2**20))
  assert path.stat().st_size < 2**20
  with pytest.raises(TorchFileError, match=r"bomb\.pt: member 'archive/data/0' .*zip bomb"):
    torch_files.load_torch_file(path)


def test_deflated_members_of_a_fair_ratio_load(tmp_path):
  values = np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32)
  data_pkl, storages = tw.pickle_bytes({'w': tw.Tensor(values)})
  path = tmp_path / 'deflated.pt'
  with zipfile.ZipFile(path, 'w', compression=zipfile.ZIP_DEFLATED) as archive:
    archive.writestr('archive/data.pkl', data_pkl)
    archive.writestr('archive/data/0', storages['0'].tobytes())
  np.testing.assert_array_equal(torch_files.load_torch_file(path)['w'], values)


@pytest.mark.parametrize('writer', list(WRITERS))
def test_a_container_that_holds_itself_is_refused(tmp_path, writer):
  loop = [tw.Tensor(np.ones(2, np.float32))]
  loop.append(loop)
  path = tmp_path / 'loop.pt'
  WRITERS[writer](path, {'data': loop})
  with pytest.raises(TorchFileError, match=r'loop\.pt: a container holds itself'):
    torch_files.load_torch_file(path)


def test_deep_nesting_is_refused(tmp_path):
  data = _nested_lists(50_000) + b'.'
  zipped, plain = tmp_path / 'deep.pt', tmp_path / 'deep.pkl'
  _zip_with_pickle(zipped, data)
  plain.write_bytes(data)
  with pytest.raises(TorchFileError, match=r'deep\.pt: containers are nested more than 100'):
    torch_files.load_torch_file(zipped)
  with pytest.raises(TorchFileError, match=r'deep\.pkl: containers are nested more than 100'):
    torch_files.load_pickle_file(plain)
  shallow = tmp_path / 'shallow.pt'
  _zip_with_pickle(shallow, _nested_lists(100) + b'.')
  torch_files.load_torch_file(shallow)


def test_a_deep_persistent_id_is_described_briefly(tmp_path):
  path = tmp_path / 'pid.pt'
  _zip_with_pickle(path, _nested_lists(50_000) + b'Q.')  # BINPERSID of the nested list.
  with pytest.raises(UnsafeFileError, match=r'pid\.pt: refusing to load: unexpected persistent id'):
    torch_files.load_torch_file(path)


def test_a_deep_tuple_key_is_refused_without_crashing(tmp_path):
  # Hashing a tuple nested 200,000 deep overflows the C stack: run it in a child.
  path = tmp_path / 'tuple.pkl'
  path.write_bytes(b'\x80\x02}' + b')' + b'\x85' * 200_000 + b'Ns.')  # {((…(),),): None}
  script = (
    'import sys\nfrom beard_jax.io import torch_files\n'
    'try:\n  torch_files.load_pickle_file(sys.argv[1])\n'
    'except torch_files.TorchFileError as e:\n  print(e)\n'
  )
  env = dict(os.environ, PYTHONPATH=str(_REPO))
  result = subprocess.run(
    [sys.executable, '-c', script, str(path)], capture_output=True, text=True, env=env, timeout=120
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.startswith(f'{path}: tuples are nested more than 100 levels deep')

"""The safe torch-file reader: benign files load, hostile ones never run code."""

import os
import pickle
import zipfile

import numpy as np
import pytest
import torch_writer as tw

from beard_jax.io import torch_files


def _marker_payloads(marker):
  """Hostile calls, each of which would create `marker` if it ran."""
  return {
    'os.system': tw.Call(tw.Global('os', 'system'), (f'touch {marker}',)),
    'posix.system': tw.Call(tw.Global('posix', 'system'), (f'touch {marker}',)),
    'builtins.eval': tw.Call(tw.Global('builtins', 'eval'), (f"open({str(marker)!r}, 'w')",)),
    'builtins.exec': tw.Call(tw.Global('builtins', 'exec'), (f"open({str(marker)!r}, 'w')",)),
    'subprocess.Popen': tw.Call(tw.Global('subprocess', 'Popen'), (['touch', str(marker)],)),
  }


class _ReducePayload:
  """A real object whose __reduce__ would run a shell command when unpickled."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f'touch {self.marker}',))


def test_benign_zip_round_trip(tmp_path):
  images = np.random.default_rng(0).normal(size=(4, 3, 2, 2)).astype(np.float32)
  labels = np.arange(4, dtype=np.int64)
  path = tmp_path / 'set.pt'
  tw.write_torch_zip(path, {'data': [[tw.Tensor(images), tw.Tensor(labels)]], 'n': 3})
  loaded = torch_files.load_torch_file(path)
  np.testing.assert_array_equal(loaded['data'][0][0], images)
  np.testing.assert_array_equal(loaded['data'][0][1], labels)
  assert loaded['data'][0][1].dtype == np.int64 and loaded['n'] == 3


@pytest.mark.parametrize(
  'kind', ['os.system', 'posix.system', 'builtins.eval', 'builtins.exec', 'subprocess.Popen']
)
@pytest.mark.parametrize('container', ['zip', 'plain'])
def test_hostile_global_is_refused_and_never_runs(tmp_path, kind, container):
  marker = tmp_path / 'pwned'
  payload = {'data': [_marker_payloads(marker)[kind]]}
  path = tmp_path / 'evil.pt'
  if container == 'zip':
    tw.write_torch_zip(path, payload)
  else:
    tw.write_plain_pickle(path, payload)
  with pytest.raises(torch_files.UnsafeFileError, match=kind.split('.')[1]):
    torch_files.load_torch_file(path)
  if container == 'plain':
    with pytest.raises(torch_files.UnsafeFileError):
      torch_files.load_pickle_file(path)
  assert not marker.exists()


def test_reduce_payload_plain_pickle_and_zip(tmp_path):
  marker = tmp_path / 'pwned'
  plain = tmp_path / 'evil.pkl'
  plain.write_bytes(pickle.dumps({'x': _ReducePayload(marker)}, protocol=2))
  zipped = tmp_path / 'evil.pt'
  with zipfile.ZipFile(zipped, 'w') as archive:
    archive.writestr('archive/data.pkl', pickle.dumps([_ReducePayload(marker)], protocol=2))
  for path in (plain, zipped):
    with pytest.raises(torch_files.UnsafeFileError, match='system'):
      torch_files.load_torch_file(path)
  with pytest.raises(torch_files.UnsafeFileError):
    torch_files.load_pickle_file(plain)
  assert not marker.exists()
  # The same pickle does run under plain pickle: the payload is real.
  pickle.loads(plain.read_bytes())
  assert marker.exists()


def test_build_on_allow_listed_object_is_refused(tmp_path):
  # _rebuild_parameter(x) returns x, so BUILD would set attributes on the shared
  # FloatStorage stand-in and corrupt every later load in the process.
  storage_type = tw.Call(
    tw.Global('torch._utils', '_rebuild_parameter'),
    (tw.Global('torch', 'FloatStorage'),),
    state={'dtype': np.dtype(np.float16)},
  )
  path = tmp_path / 'mutate.pt'
  tw.write_torch_zip(path, [storage_type])
  with pytest.raises(torch_files.UnsafeFileError, match='state'):
    torch_files.load_torch_file(path)
  benign = tmp_path / 'benign.pt'
  values = np.array([1.5, -2.0, 3.25], np.float32)
  tw.write_torch_zip(benign, tw.Tensor(values))
  loaded = torch_files.load_torch_file(benign)
  assert loaded.dtype == np.float32
  np.testing.assert_array_equal(loaded, values)


def test_truncated_and_corrupt_zip(tmp_path):
  path = tmp_path / 'ok.pt'
  tw.write_torch_zip(path, {'x': tw.Tensor(np.arange(1000, dtype=np.float32))})
  raw = path.read_bytes()
  truncated = tmp_path / 'truncated.pt'
  truncated.write_bytes(raw[: len(raw) // 2])
  with pytest.raises(torch_files.TorchFileError):
    torch_files.load_torch_file(truncated)
  corrupt = tmp_path / 'corrupt.pt'
  start = raw.index(np.arange(1000, dtype=np.float32).tobytes()[:64])
  damaged = bytearray(raw)
  damaged[start + 100 : start + 110] = b'\xff' * 10
  corrupt.write_bytes(bytes(damaged))
  with pytest.raises(torch_files.TorchFileError):
    torch_files.load_torch_file(corrupt)
  garbage = tmp_path / 'garbage.pt'
  garbage.write_bytes(b'not a torch file at all')
  with pytest.raises(torch_files.TorchFileError):
    torch_files.load_torch_file(garbage)


def test_storage_too_short_for_tensor(tmp_path):
  path = tmp_path / 'short.pt'
  tw.write_torch_zip(path, tw.Tensor(np.zeros((4, 4), np.float32)))
  with zipfile.ZipFile(path) as archive:
    members = {n: archive.read(n) for n in archive.namelist()}
  members['archive/data/0'] = members['archive/data/0'][:32]
  with zipfile.ZipFile(path, 'w') as archive:
    for name, data in members.items():
      archive.writestr(name, data)
  with pytest.raises(torch_files.TorchFileError, match=r'declares 16 float32 .* holds 32 bytes'):
    torch_files.load_torch_file(path)
  view = tmp_path / 'view.pt'
  tw.write_torch_zip(view, tw.View(np.zeros(8, np.float32), (4, 4), (4, 1)))
  with pytest.raises(torch_files.TorchFileError, match='past the end'):
    torch_files.load_torch_file(view)


def test_missing_file():
  with pytest.raises(FileNotFoundError):
    torch_files.load_torch_file('/nonexistent/file.pt')

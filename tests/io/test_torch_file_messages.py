"""Every refusal of the torch-file reader is one line that names the file and says why."""

import pickle
import shutil
import zipfile

import numpy as np
import pytest
import torch_writer as tw

from beard_jax.io import torch_files

CHECKPOINT = 'beard_model_pool/DC_ConvNet_CIFAR10_50_None.pth'
DC_IPC1 = 'dataset_pool/DC/res_DC_CIFAR10_ConvNet_1ipc_3000.pt'


def _message(path, load=torch_files.load_torch_file) -> str:
  """The message of the TorchFileError that loading `path` raises; checks its form."""
  with pytest.raises(torch_files.TorchFileError) as raised:
    load(path)
  message = str(raised.value)
  assert message.startswith(f'{path}: '), message
  assert '\n' not in message and len(message) < 700, message
  return message


def test_empty_file(tmp_path):
  path = tmp_path / 'empty.pt'
  path.write_bytes(b'')
  expected = 'empty file (0 bytes); expected a PyTorch save file (zip or legacy pickle)'
  assert _message(path) == f'{path}: {expected}'
  assert (
    _message(path, torch_files.load_pickle_file)
    == f'{path}: empty file (0 bytes); expected a pickle'
  )


def test_random_bytes(tmp_path):
  path = tmp_path / 'random.pt'
  path.write_bytes(b'_:' + np.random.default_rng(0).bytes(200))
  message = _message(path)
  assert message.startswith(f'{path}: not a PyTorch save file (starts with bytes 5f 3a ')
  assert message.endswith('expected a zip archive or a pickle)')


@pytest.mark.parametrize('relative', [CHECKPOINT, DC_IPC1])
@pytest.mark.parametrize('fraction', [0.5, 0.9, 0.999])
def test_a_truncated_real_file(tmp_path, real_data_path, relative, fraction):
  raw = real_data_path(relative).read_bytes()
  path = tmp_path / 'cut.pth'
  path.write_bytes(raw[: int(len(raw) * fraction)])
  message = _message(path)
  assert 'truncated or damaged zip archive' in message
  assert f'{path.stat().st_size:,} bytes' in message


def test_a_damaged_real_file(tmp_path, real_data_path):
  path = tmp_path / 'flipped.pth'
  shutil.copy(real_data_path(CHECKPOINT), path)
  raw = bytearray(path.read_bytes())
  raw[len(raw) // 2] ^= 0xFF  # Inside a stored tensor: the member's CRC no longer holds.
  path.write_bytes(bytes(raw))
  assert 'is damaged: BadZipFile: Bad CRC-32' in _message(path)


def test_a_truncated_legacy_file(tmp_path):
  path = tmp_path / 'legacy.pt'
  tw.write_torch_legacy(path, {'w': tw.Tensor(np.arange(100, dtype=np.float32))})
  raw = path.read_bytes()
  for cut, expected in [
    (1, 'truncated pickle: the data ends at byte 1'),
    (60, 'truncated pickle: the data ends at byte 60'),
    (150, 'truncated pickle: the data ends at byte 150'),
    (len(raw) - 1, "truncated file: storage '0' needs 400 bytes"),
  ]:
    path.write_bytes(raw[:cut])
    assert expected in _message(path), cut


def test_a_plain_pickle_is_not_a_torch_file(tmp_path):
  path = tmp_path / 'plain.pt'
  path.write_bytes(pickle.dumps({'a': 1}, protocol=2))
  message = _message(path)
  assert "a pickle whose first value (the legacy magic number) is {'a': 1}" in message
  assert 'expected a file written by torch.save' in message


def test_an_unknown_opcode(tmp_path):
  path = tmp_path / 'opcode.pt'
  path.write_bytes(b'\x80\x02\xff')
  assert _message(path) == f'{path}: corrupt pickle: unknown opcode 0xff at byte 2'


def test_a_torch_zip_without_its_pickle(tmp_path):
  path = tmp_path / 'nopickle.pt'
  with zipfile.ZipFile(path, 'w') as archive:
    archive.writestr('archive/version', '3\n')
  assert 'holds exactly one data.pkl, found []' in _message(path)


def test_a_hostile_pickle_names_the_file(tmp_path):
  path = tmp_path / 'evil.pt'
  tw.write_torch_zip(path, [tw.Call(tw.Global('os', 'system'), ('true',))])
  with pytest.raises(torch_files.UnsafeFileError, match=r'evil\.pt: refusing to load'):
    torch_files.load_torch_file(path)

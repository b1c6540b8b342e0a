"""`load_torch_file` against real `torch.save` output, zip and legacy formats."""

import numpy as np
import pytest

torch = pytest.importorskip('torch', reason='parity tests need torch (pip install .[parity])')

from beard_jax.data import dataset_pool  # noqa: E402
from beard_jax.io import torch_files  # noqa: E402

pytestmark = pytest.mark.parity


def _objects():
  base = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
  return {
    'tensor': base,
    'transposed': base.transpose(0, 2),
    'offset_view': base[1],
    'strided_slice': base[:, 1:, ::2],
    'expanded': torch.ones(3, 1).expand(3, 4),
    'channels_last': torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last),
    'shared_storage': [base, base[0], base.view(-1)],
    'dict_list': {'a': base, 'b': [base[0], 3, 'x'], 'c': (1.5, None), 7: True},
    'int64': torch.arange(-5, 5),
    'float16': torch.randn(3, 3).half(),
    'bool': torch.tensor([True, False, True]),
    'uint8_int8': [
      torch.tensor([255, 0], dtype=torch.uint8),
      torch.tensor([-1, 2], dtype=torch.int8),
    ],
    'int32_int16_float64': [
      torch.tensor([1, -2], dtype=torch.int32),
      torch.tensor([3], dtype=torch.int16),
      torch.tensor([0.1], dtype=torch.float64),
    ],
    'bfloat16': torch.randn(5).bfloat16(),
    'complex': torch.tensor([1 + 2j, -3j]),
    'scalar': torch.tensor(3.5),
    'empty': torch.zeros(0, 3),
    'parameter': torch.nn.Parameter(torch.ones(2)),
    'state_dict': torch.nn.Conv2d(3, 4, 3).state_dict(),
    'numpy_dict': {
      'x': np.arange(6.0).reshape(2, 3),
      'y': np.float64(0.25),
      'z': np.arange(3, dtype=np.int32),
      'accs': [np.float64(0.4528), np.float64(0.4545)],
    },
    'set': {1, 2},
    'dataset_pool': {'data': [[torch.randn(10, 3, 32, 32), torch.arange(10)]]},
  }


def _assert_same(expected, actual, where='obj'):
  if isinstance(expected, torch.Tensor):
    assert isinstance(actual, np.ndarray), where
    if expected.dtype == torch.bfloat16:
      assert str(actual.dtype) == 'bfloat16', where
      np.testing.assert_array_equal(actual.astype(np.float32), expected.float().numpy())
      return
    reference = expected.detach().numpy()
    assert actual.dtype == reference.dtype and actual.shape == reference.shape, where
    assert actual.flags.c_contiguous, where
    np.testing.assert_array_equal(actual, reference, err_msg=where)
  elif isinstance(expected, dict):
    assert isinstance(actual, dict) and list(actual) == list(expected), where
    for key in expected:
      _assert_same(expected[key], actual[key], f'{where}[{key!r}]')
  elif isinstance(expected, list | tuple):
    assert type(actual) is type(expected) and len(actual) == len(expected), where
    for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
      _assert_same(e, a, f'{where}[{i}]')
  elif isinstance(expected, np.ndarray):
    assert actual.dtype == expected.dtype, where
    np.testing.assert_array_equal(actual, expected, err_msg=where)
  else:
    assert type(actual) is type(expected) and actual == expected, where


@pytest.mark.parametrize('legacy', [False, True], ids=['zip', 'legacy'])
@pytest.mark.parametrize('name', list(_objects()))
def test_matches_torch_load(tmp_path, name, legacy):
  obj = _objects()[name]
  path = tmp_path / f'{name}.pt'
  torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
  reference = torch.load(path, weights_only=False)
  _assert_same(reference, torch_files.load_torch_file(path), name)


def test_real_checkpoint_matches_torch(real_data_path):
  path = real_data_path('beard_model_pool/DC_ConvNet_CIFAR10_50_None.pth')
  reference = torch.load(path, map_location='cpu', weights_only=True)
  _assert_same(dict(reference), torch_files.load_torch_file(path))


def test_upsample_matches_torch_bilinear():
  rng = np.random.default_rng(0)
  images = rng.normal(size=(3, 16, 12, 3)).astype(np.float32)
  expected = (
    torch.nn.functional.interpolate(
      torch.from_numpy(images).permute(0, 3, 1, 2),
      scale_factor=2,
      mode='bilinear',
      align_corners=False,
    )
    .permute(0, 2, 3, 1)
    .numpy()
  )
  np.testing.assert_allclose(dataset_pool.upsample2x_bilinear(images), expected, atol=1e-6)


def test_factorize_matches_reference_decoder():
  """The 4-in-1 split as the reference decoder writes it in torch (crop, cat, upsample)."""
  rng = np.random.default_rng(1)
  images = rng.normal(size=(5, 3, 32, 32)).astype(np.float32)
  labels = np.arange(5)
  x = torch.from_numpy(images)
  crops = [
    x[:, :, i * 16 : (i + 1) * 16, j * 16 : (j + 1) * 16] for i in range(2) for j in range(2)
  ]
  expected = torch.nn.Upsample(size=(32, 32), mode='bilinear')(torch.cat(crops))
  got, got_labels = dataset_pool.factorize_4in1(images.transpose(0, 2, 3, 1), labels)
  np.testing.assert_allclose(got, expected.permute(0, 2, 3, 1).numpy(), atol=1e-6)
  np.testing.assert_array_equal(got_labels, np.concatenate([labels] * 4))

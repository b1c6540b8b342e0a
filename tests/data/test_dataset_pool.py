"""Distilled-set loading: the real DC files, MTT/npz layouts, 4-in-1, refusals, discovery."""

import numpy as np
import pytest
import torch_writer as tw

from beard_jax.data import dataset_pool, specs
from beard_jax.io import torch_files

DC10 = 'dataset_pool/DC/res_DC_CIFAR10_ConvNet_10ipc_3000.pt'
SPEC = specs.get_dataset_spec('cifar10')


def _normalise(pixels_nhwc):
  mean, std = np.asarray(SPEC.mean, np.float32), np.asarray(SPEC.std, np.float32)
  return ((pixels_nhwc - mean) / std).transpose(0, 3, 1, 2)


def test_real_dc_sets(real_data_path):
  path = real_data_path(DC10)
  raw = torch_files.load_torch_file(path)
  assert len(raw['data']) == 3
  for experiment in range(3):
    loaded = dataset_pool.load_distilled_set(path, 'CIFAR10', experiment=experiment)
    assert loaded.images.shape == (100, 32, 32, 3) and loaded.images.dtype == np.float32
    assert loaded.labels.dtype == np.int32
    np.testing.assert_array_equal(loaded.labels, np.repeat(np.arange(10), 10))  # Class-major.
    assert (loaded.method, loaded.dataset, loaded.ipc) == ('DC', 'cifar10', 10)
    assert loaded.source.endswith(f'#{experiment}')
    np.testing.assert_allclose(_normalise(loaded.images), raw['data'][experiment][0], atol=1e-6)
  # Not clipped: DC pixels do leave [0, 1].
  assert loaded.images.min() < 0 or loaded.images.max() > 1
  with pytest.raises(ValueError, match=r'experiment 3 is out of range.*3 experiments'):
    dataset_pool.load_distilled_set(path, 'cifar10', experiment=3)


def test_real_dc_ipc1_and_wrong_dataset(real_data_path):
  path = real_data_path('dataset_pool/DC/res_DC_CIFAR10_ConvNet_1ipc_3000.pt')
  loaded = dataset_pool.load_distilled_set(path, 'cifar10')
  assert loaded.images.shape == (10, 32, 32, 3) and loaded.ipc == 1
  with pytest.raises(ValueError, match=r'\[0, 10\)|64'):
    dataset_pool.load_distilled_set(path, 'tinyimagenet')


def test_find_real_pool(real_data_path):
  pool = real_data_path('dataset_pool')
  assert dataset_pool.find_dataset_pool(pool, 'cifar-10', 10) == {
    'DC': pool / DC10.split('/', 1)[1]
  }
  assert list(dataset_pool.find_dataset_pool(pool, 'cifar10', 1)) == ['DC']
  assert dataset_pool.find_dataset_pool(pool, 'cifar10', 50) == {}
  assert dataset_pool.find_dataset_pool(pool, 'cifar100', 10) == {}


def _random_set(rng, ipc=2, k=10, size=32):
  images = rng.normal(size=(k * ipc, 3, size, size)).astype(np.float32)
  labels = np.repeat(np.arange(k), ipc).astype(np.int64)
  return images, labels


def test_mtt_folder_and_soft_labels(tmp_path):
  rng = np.random.default_rng(0)
  images, labels = _random_set(rng)
  folder = tmp_path / 'MTT_CIFAR10_2ipc'
  folder.mkdir()
  tw.write_torch_zip(folder / 'images_best.pt', tw.Tensor(images))
  soft = np.eye(10, dtype=np.float32)[labels] * 0.9 + 0.01
  tw.write_torch_zip(folder / 'labels_best.pt', tw.Tensor(soft))
  for path in (folder, folder / 'images_best.pt'):
    loaded = dataset_pool.load_distilled_set(path, 'cifar10')
    assert loaded.method == 'MTT' and loaded.ipc == 2
    assert loaded.labels.shape == (20, 10) and loaded.labels.dtype == np.float32
    np.testing.assert_allclose(_normalise(loaded.images), images, atol=1e-5)
  (folder / 'labels_best.pt').unlink()
  with pytest.raises(FileNotFoundError, match='labels_best.pt'):
    dataset_pool.load_distilled_set(folder, 'cifar10')


def test_npz_pixel_scale(tmp_path):
  rng = np.random.default_rng(1)
  pixels = rng.integers(0, 256, size=(20, 32, 32, 3), dtype=np.uint8)
  labels = np.repeat(np.arange(10), 2)
  np.savez(tmp_path / 'DM_CIFAR10_2ipc.npz', images=pixels, labels=labels)
  loaded = dataset_pool.load_distilled_set(tmp_path / 'DM_CIFAR10_2ipc.npz', 'cifar10')
  np.testing.assert_allclose(loaded.images, pixels / 255.0, atol=1e-7)
  assert loaded.method == 'DM'
  floats = rng.uniform(-0.1, 1.1, size=(20, 32, 32, 3)).astype(np.float32)
  np.savez(tmp_path / 'x.npz', images=floats, labels=labels)
  np.testing.assert_array_equal(
    dataset_pool.load_distilled_set(tmp_path / 'x.npz', 'cifar10').images, floats
  )


def test_factorized_4in1(tmp_path):
  rng = np.random.default_rng(2)
  images, labels = _random_set(rng, ipc=1)
  path = tmp_path / 'BACON' / 'res_BACON_CIFAR10_ConvNet_1ipc.pt'
  path.parent.mkdir()
  tw.write_torch_zip(path, {'data': [[tw.Tensor(images), tw.Tensor(labels)]]})
  loaded = dataset_pool.load_distilled_set(path, 'cifar10')  # BACON: factorised by default.
  plain = dataset_pool.load_distilled_set(path, 'cifar10', factorized=False)
  assert loaded.images.shape == (40, 32, 32, 3) and plain.images.shape == (10, 32, 32, 3)
  assert loaded.ipc == 1
  np.testing.assert_array_equal(loaded.labels, np.tile(labels, 4))
  # Image 3's bottom-right quadrant is row 3·10 + 3; upsampling a 16×16 quadrant by
  # 2 keeps its mean up to the border terms, and pixel (1, 1) is a fixed blend.
  quadrant = plain.images[3, 16:, 16:]
  decoded = loaded.images[33]
  expected_11 = (
    0.75 * 0.75 * quadrant[0, 0]
    + 0.75 * 0.25 * (quadrant[0, 1] + quadrant[1, 0])
    + 0.25 * 0.25 * quadrant[1, 1]
  )
  np.testing.assert_allclose(decoded[1, 1], expected_11, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(decoded[0, 0], quadrant[0, 0], rtol=1e-6)
  np.testing.assert_allclose(decoded[-1, -1], quadrant[-1, -1], rtol=1e-6)
  # A constant image stays constant.
  const = dataset_pool.factorize_4in1(np.full((1, 8, 8, 3), 0.3, np.float32), np.zeros(1))[0]
  np.testing.assert_allclose(const, 0.3, rtol=1e-6)
  dc = dataset_pool.load_distilled_set(path, 'cifar10', method='DC')
  assert dc.images.shape == (10, 32, 32, 3)


def _write_set(path, images, labels, experiments=1):
  pairs = [[tw.Tensor(images), tw.Tensor(labels)] for _ in range(experiments)]
  tw.write_torch_zip(path, {'data': pairs, 'accs_all_exps': {'ConvNet': [np.float64(0.5)]}})


@pytest.mark.parametrize(
  ('mutate', 'match'),
  [
    (lambda x, y: (np.where(np.arange(x.size).reshape(x.shape) == 7, np.nan, x), y), 'NaN'),
    (lambda x, y: (np.where(np.arange(x.size).reshape(x.shape) == 7, np.inf, x), y), 'infinite'),
    (lambda x, y: (x[:, :1], y), r'\[N, 3, 32, 32\]'),
    (lambda x, y: (x[:, :, :16, :16], y), r'\[N, 3, 32, 32\]'),
    (lambda x, y: (x[0], y), r'found shape \(3, 32, 32\)'),
    (lambda x, y: (x, np.where(y == 9, 10, y)), r'\[0, 10\).*\[0, 10\]'),
    (lambda x, y: (x, np.where(y == 9, -1, y)), r'\[0, 10\)'),
    (lambda x, y: (x, np.where(y == 4, 5, y)), r'classes \[4\] have no image'),
    (lambda x, y: (x, y[:-1]), 'counts must match'),
    (lambda x, y: (x, y.astype(np.float32)), 'integers'),
  ],
)
def test_bad_sets_are_refused(tmp_path, mutate, match):
  images, labels = _random_set(np.random.default_rng(3))
  bad_images, bad_labels = mutate(images, labels)
  path = tmp_path / 'res_DC_CIFAR10_ConvNet_2ipc.pt'
  _write_set(path, np.asarray(bad_images, np.float32), bad_labels)
  with pytest.raises(ValueError, match=match):
    dataset_pool.load_distilled_set(path, 'cifar10')


def test_not_a_dataset_file(tmp_path):
  path = tmp_path / 'weights.pt'
  tw.write_torch_zip(path, {'features.0.weight': tw.Tensor(np.zeros((2, 2), np.float32))})
  with pytest.raises(ValueError, match="key 'data'"):
    dataset_pool.load_distilled_set(path, 'cifar10')
  with pytest.raises(FileNotFoundError):
    dataset_pool.load_distilled_set(tmp_path / 'absent.pt', 'cifar10')


def test_find_pool_layouts(tmp_path):
  images, labels = _random_set(np.random.default_rng(4))
  (tmp_path / 'DSA').mkdir()
  _write_set(tmp_path / 'DSA' / 'res_DSA_CIFAR10_ConvNet_2ipc_1000.pt', images, labels)
  _write_set(tmp_path / 'res_DM_cifar-10_ConvNet_2ipc.pt', images, labels)
  _write_set(tmp_path / 'res_DM_CIFAR100_ConvNet_2ipc.pt', images, labels)
  _write_set(tmp_path / 'res_DC_CIFAR10_ConvNet_20ipc.pt', images, labels)
  mtt = tmp_path / 'MTT' / 'MTT_CIFAR10_2ipc'
  mtt.mkdir(parents=True)
  for name in dataset_pool.MTT_FILES:
    (mtt / name).write_bytes(b'')
  np.savez(tmp_path / 'IDM_CIFAR10_2ipc.npz', images=np.zeros((20, 32, 32, 3)), labels=labels)
  found = dataset_pool.find_dataset_pool(tmp_path, 'cifar10', 2)
  assert found == {
    'DM': tmp_path / 'res_DM_cifar-10_ConvNet_2ipc.pt',
    'DSA': tmp_path / 'DSA' / 'res_DSA_CIFAR10_ConvNet_2ipc_1000.pt',
    'IDM': tmp_path / 'IDM_CIFAR10_2ipc.npz',
    'MTT': mtt,
  }
  _write_set(tmp_path / 'DSA' / 'res_DSA_CIFAR10_ConvNet_2ipc_2000.pt', images, labels)
  with pytest.raises(ValueError, match='two DSA sets'):
    dataset_pool.find_dataset_pool(tmp_path, 'cifar10', 2)


def test_integer_images_in_a_pt_are_refused(tmp_path):
  # uint8 pixels read as normalised values reach 52 after un-normalising.
  pixels = np.random.default_rng(5).integers(0, 256, size=(20, 3, 32, 32), dtype=np.uint8)
  path = tmp_path / 'res_DC_CIFAR10_ConvNet_2ipc.pt'
  _write_set(path, pixels, np.repeat(np.arange(10), 2))
  expected = r'found uint8 images with values 0\.\.255\. Save pixel images as \.npz'
  with pytest.raises(ValueError, match=r'2ipc\.pt#0: .*normalised images; ' + expected):
    dataset_pool.load_distilled_set(path, 'cifar10')


def test_float_images_of_0_255_pixels_are_refused(tmp_path):
  rng = np.random.default_rng(6)
  labels = np.repeat(np.arange(10), 2)
  pixels = rng.integers(0, 256, size=(20, 32, 32, 3)).astype(np.float32)
  pt = tmp_path / 'res_DC_CIFAR10_ConvNet_2ipc.pt'
  _write_set(pt, pixels.transpose(0, 3, 1, 2), labels)
  with pytest.raises(ValueError, match=r'span 0\.\.255, like 0\.\.255 pixels; expected mean/std'):
    dataset_pool.load_distilled_set(pt, 'cifar10')
  npz = tmp_path / 'DM_CIFAR10_2ipc.npz'
  np.savez(npz, images=pixels, labels=labels)
  with pytest.raises(ValueError, match=r'like 0\.\.255 pixels; expected float pixels in about'):
    dataset_pool.load_distilled_set(npz, 'cifar10')
  np.savez(npz, images=pixels.astype(np.uint8), labels=labels)  # The same pixels as uint8 load.
  np.testing.assert_allclose(dataset_pool.load_distilled_set(npz, 'cifar10').images, pixels / 255)


def test_find_and_load_a_pool_in_a_folder_with_brackets(tmp_path):
  images, labels = _random_set(np.random.default_rng(7))
  pool = tmp_path / 'pool[1]'
  (pool / 'DC').mkdir(parents=True)
  _write_set(pool / 'DC' / 'res_DC_CIFAR10_ConvNet_2ipc.pt', images, labels)
  np.savez(pool / 'DM_CIFAR10_2ipc.npz', images=np.zeros((20, 32, 32, 3)), labels=labels)
  found = dataset_pool.find_dataset_pool(pool, 'cifar10', 2)
  assert found == {
    'DC': pool / 'DC' / 'res_DC_CIFAR10_ConvNet_2ipc.pt',
    'DM': pool / 'DM_CIFAR10_2ipc.npz',
  }
  assert dataset_pool.load_distilled_set(found['DC'], 'cifar10').method == 'DC'

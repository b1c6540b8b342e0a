"""Real-dataset loading: the shared real data, official-format fixtures, tfds, errors."""

import os

import cifar_fixtures
import numpy as np
import pytest

from beard_jax.data import real, tfds_source, tiny_imagenet
from beard_jax.io import torch_files


def _expected_nhwc(data):
  """Independent decoding of CIFAR rows: pixel (r, c) of channel ch is at ch·1024 + r·32 + c."""
  n = data.shape[0]
  rows, cols = np.meshgrid(np.arange(32), np.arange(32), indexing='ij')
  out = np.zeros((n, 32, 32, 3), np.uint8)
  for channel in range(3):
    out[..., channel] = data[:, channel * 1024 + rows * 32 + cols]
  return out


# ----------------------------------------------------------------------------- real data


def test_cifar10_test_from_shared_npz(real_data_path):
  path = real_data_path('cifar10/test.npz')
  loaded = real.load_real_dataset('CIFAR-10', 'test', path.parent.parent)
  with np.load(path) as raw:
    np.testing.assert_array_equal(loaded.images, raw['images'])
    np.testing.assert_array_equal(loaded.labels, raw['labels'])
  assert loaded.images.shape == (10000, 32, 32, 3) and loaded.images.dtype == np.uint8
  assert loaded.labels.dtype == np.int32
  assert np.bincount(loaded.labels, minlength=10).tolist() == [1000] * 10
  assert loaded.class_names[0] == 'airplane' and loaded.class_names[9] == 'truck'


def test_cifar10_train_subset_warns(real_data_path):
  root = real_data_path('cifar10/train_1k_per_class.npz').parent.parent
  with pytest.warns(UserWarning, match='train_1k_per_class.npz'):
    loaded = real.load_real_dataset('cifar10', 'train', root)
  assert np.bincount(loaded.labels).tolist() == [1000] * 10


@pytest.fixture(scope='module')
def tiny_val(real_data_path):
  root = str(real_data_path('.'))
  real_data_path('tiny-imagenet-200')
  return root, real.load_real_dataset('tiny-imagenet', 'test', root)


def test_tiny_imagenet_val(tiny_val):
  root, loaded = tiny_val
  folder = os.path.join(root, 'tiny-imagenet-200')
  assert loaded.images.shape == (10000, 64, 64, 3) and loaded.images.dtype == np.uint8
  assert np.bincount(loaded.labels, minlength=200).tolist() == [50] * 200
  wnids = open(os.path.join(folder, 'wnids.txt')).read().split()
  assert loaded.class_names == tuple(wnids)
  with open(os.path.join(folder, 'val', 'val_annotations.txt')) as f:
    first = f.readline().split('\t')
  assert loaded.labels[0] == wnids.index(first[1])


def test_tiny_imagenet_grayscale_becomes_rgb(tiny_val):
  from PIL import Image

  root, loaded = tiny_val
  images_dir = os.path.join(root, 'tiny-imagenet-200', 'val', 'images')
  gray = []
  for i in range(10000):
    with Image.open(os.path.join(images_dir, f'val_{i}.JPEG')) as image:
      if image.mode == 'L':
        gray.append(i)
        np.testing.assert_array_equal(loaded.images[i], np.asarray(image.convert('RGB')))
  assert len(gray) == 168  # The data README's count.
  chosen = loaded.images[gray]
  assert (chosen[..., 0] == chosen[..., 1]).all() and (chosen[..., 1] == chosen[..., 2]).all()


def test_tiny_imagenet_sorted_class_order(tiny_val):
  root, by_line = tiny_val
  by_sort = real.load_real_dataset('tinyimagenet', 'test', root, class_order='sorted')
  assert by_sort.class_names == tuple(sorted(by_line.class_names))
  names_line = np.array(by_line.class_names)[by_line.labels]
  names_sort = np.array(by_sort.class_names)[by_sort.labels]
  np.testing.assert_array_equal(names_line, names_sort)
  np.testing.assert_array_equal(by_line.images, by_sort.images)


# ----------------------------------------------------------------------------- fixtures


def test_cifar10_python_batches(tmp_path):
  written = cifar_fixtures.write_cifar10(tmp_path)
  for split in ('train', 'test'):
    loaded = real.load_real_dataset('cifar10', split, tmp_path)  # auto: no npz here.
    data, labels = written[split]
    np.testing.assert_array_equal(loaded.images, _expected_nhwc(data))
    np.testing.assert_array_equal(loaded.labels, labels)
    assert loaded.labels.dtype == np.int32
  assert loaded.class_names[1] == 'automobile'
  assert len(real.load_real_dataset('cifar10', 'train', tmp_path).labels) == 5 * 20


def test_cifar100_python_fine_labels(tmp_path):
  written = cifar_fixtures.write_cifar100(tmp_path / 'cifar100')  # data_dir/<name>/ layout.
  loaded = real.load_real_dataset('cifar100', 'test', tmp_path, source='cifar_python')
  data, fine = written['test']
  np.testing.assert_array_equal(loaded.images, _expected_nhwc(data))
  np.testing.assert_array_equal(loaded.labels, fine)
  assert loaded.class_names == tuple(f'fine{i:02d}' for i in range(100))


def test_cifar100_builtin_names_are_the_sorted_fine_labels():
  from beard_jax.data import cifar_files

  names = cifar_files.CIFAR100_CLASSES
  assert len(set(names)) == 100 and list(names) == sorted(names)
  assert names[0] == 'apple' and names[-1] == 'worm'


def test_hostile_cifar_batch_never_runs(tmp_path):
  cifar_fixtures.write_cifar10(tmp_path)
  marker = tmp_path / 'pwned'
  payload = (
    b'\x80\x02}(U\x04datacposix\nsystem\nU'
    + bytes([len(f'touch {marker}')])
    + f'touch {marker}'.encode()
    + b'\x85Ru.'
  )
  (tmp_path / 'cifar-10-batches-py' / 'test_batch').write_bytes(payload)
  with pytest.raises(torch_files.UnsafeFileError, match='posix.system'):
    real.load_real_dataset('cifar10', 'test', tmp_path)
  assert not marker.exists()


def test_cifar_missing_batch_is_an_error_not_a_fallthrough(tmp_path):
  cifar_fixtures.write_cifar10(tmp_path)
  (tmp_path / 'cifar-10-batches-py' / 'data_batch_3').unlink()
  with pytest.raises(FileNotFoundError, match='data_batch_3'):
    real.load_real_dataset('cifar10', 'train', tmp_path)


def _write_tiny_folder(root, val_images):
  from PIL import Image

  folder = root / 'tiny-imagenet-200'
  wnids = [f'n{i:08d}' for i in range(200)][::-1]  # Line order is not sorted order.
  (folder / 'val' / 'images').mkdir(parents=True)
  (folder / 'wnids.txt').write_text('\n'.join(wnids) + '\n')
  rng = np.random.default_rng(0)
  lines = []
  for i, (wnid, gray) in enumerate(val_images):
    pixels = rng.integers(0, 256, size=(64, 64) if gray else (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / 'val' / 'images' / f'val_{i}.JPEG')
    lines.append(f'val_{i}.JPEG\t{wnids[wnid]}\t0\t0\t63\t63')
  (folder / 'val' / 'val_annotations.txt').write_text('\n'.join(lines) + '\n')
  for c in range(200):
    (folder / 'train' / wnids[c] / 'images').mkdir(parents=True)
    for j in (10, 2) if c in (0, 199) else (5,):
      pixels = np.full((64, 64, 3), c + j, np.uint8)
      Image.fromarray(pixels).save(folder / 'train' / wnids[c] / 'images' / f'{wnids[c]}_{j}.JPEG')
  return folder, wnids


def test_tiny_imagenet_folder_fixture_and_cache(tmp_path):
  folder, wnids = _write_tiny_folder(tmp_path, [(5, False), (199, True), (0, False)])
  cache = tmp_path / 'cache'
  first = real.load_real_dataset('tinyimagenet', 'test', tmp_path, cache_dir=cache)
  assert first.labels.tolist() == [5, 199, 0]
  assert (cache / 'tinyimagenet_test_wnids.npz').is_file()
  gray = first.images[1]
  assert (gray[..., 0] == gray[..., 2]).all()
  second = real.load_real_dataset('tinyimagenet', 'test', tmp_path, cache_dir=cache)
  np.testing.assert_array_equal(first.images, second.images)
  # A changed folder invalidates the cache.
  with open(folder / 'val' / 'val_annotations.txt', 'a') as f:
    f.write('val_0.JPEG\t' + wnids[7] + '\t0\t0\t63\t63\n')
  third = real.load_real_dataset('tinyimagenet', 'test', tmp_path, cache_dir=cache)
  assert third.labels.tolist() == [5, 199, 0, 7]
  by_sort = real.load_real_dataset('tinyimagenet', 'test', tmp_path, class_order='sorted')
  assert by_sort.labels.tolist() == [199 - 5, 0, 199, 199 - 7]


def test_tiny_imagenet_train_order(tmp_path):
  _, wnids = _write_tiny_folder(tmp_path, [(0, False)])
  loaded = tiny_imagenet.load_tiny_imagenet(tmp_path / 'tiny-imagenet-200', 'train')
  assert loaded[1].tolist() == [0, 0, *range(1, 199), 199, 199]
  # Files sort by their number (2 before 10); JPEG of a flat image stays flat.
  means = [int(img.mean().round()) for img in loaded[0]]
  assert means == [2, 10, *[c + 5 for c in range(1, 199)], 201, 209]
  (tmp_path / 'tiny-imagenet-200' / 'train' / wnids[3] / 'images' / f'{wnids[3]}_5.JPEG').unlink()
  with pytest.raises(FileNotFoundError, match=wnids[3]):
    tiny_imagenet.load_tiny_imagenet(tmp_path / 'tiny-imagenet-200', 'train')


# ----------------------------------------------------------------------------- errors


def test_missing_dataset_names_every_place(tmp_path):
  with pytest.raises(FileNotFoundError) as error:
    real.load_real_dataset('cifar100', 'test', tmp_path)
  message = str(error.value)
  for expected in ('npz:', 'cifar100/test.npz', 'cifar-100-python', 'tfds:', 'to supply it'):
    assert expected in message
  assert '\n' not in message


@pytest.mark.parametrize(
  ('images', 'labels', 'match'),
  [
    (np.zeros((4, 32, 32, 1), np.uint8), np.zeros(4, np.int64), r'\[N, 32, 32, 3\]'),
    (np.zeros((4, 3, 32, 32), np.uint8), np.zeros(4, np.int64), 'NHWC'),
    (np.zeros((4, 32, 32, 3), np.float32), np.zeros(4, np.int64), 'uint8'),
    (np.zeros((4, 32, 32, 3), np.uint8), np.array([0, 1, 2, 10]), r'\[0, 10\)'),
    (np.zeros((4, 32, 32, 3), np.uint8), np.zeros(3, np.int64), 'one per image'),
  ],
)
def test_bad_npz_is_refused(tmp_path, images, labels, match):
  (tmp_path / 'cifar10').mkdir()
  np.savez(tmp_path / 'cifar10' / 'test.npz', images=images, labels=labels)
  with pytest.raises(ValueError, match=match):
    real.load_real_dataset('cifar10', 'test', tmp_path)


def test_unknown_names():
  with pytest.raises(ValueError, match='choose from'):
    real.load_real_dataset('mnist', 'test', '.')
  with pytest.raises(ValueError, match='choose from'):
    real.load_real_dataset('cifar10', 'val', '.')
  with pytest.raises(ValueError, match='choose from'):
    real.load_real_dataset('cifar10', 'test', '.', source='web')


# ----------------------------------------------------------------------------- tfds


def test_tfds_prepared_data_detection(tmp_path):
  assert tfds_source.prepared_dir(tmp_path, 'cifar10', 'test') is None
  version = tmp_path / 'cifar10' / '3.0.2'
  version.mkdir(parents=True)
  (version / 'dataset_info.json').write_text('{}')
  (version / 'cifar10-test.tfrecord-00000-of-00001').write_bytes(b'')
  assert tfds_source.prepared_dir(tmp_path, 'cifar10', 'test') is None
  assert 'tfrecord' in tfds_source.describe_missing(tmp_path, 'cifar10', 'test')
  (version / 'cifar10-test.array_record-00000-of-00001').write_bytes(b'')
  assert tfds_source.prepared_dir(tmp_path, 'cifar10', 'test') == version
  assert tfds_source.prepared_dir(tmp_path, 'cifar10', 'train') is None


def test_tfds_source_with_mock_data(tmp_path, monkeypatch):
  tfds = pytest.importorskip('tensorflow_datasets', reason='tensorflow-datasets not installed')
  pytest.importorskip('importlib_resources', reason='tfds needs importlib_resources')
  monkeypatch.setattr(tfds_source, 'prepared_dir', lambda *args: tmp_path)
  with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
    loaded = real.load_real_dataset('cifar100', 'test', tmp_path, source='tfds')
    reference = tfds.data_source('cifar100', split='test', data_dir=str(tmp_path))
    expected = np.stack([np.asarray(reference[i]['image']) for i in range(12)])
    expected_labels = [int(reference[i]['label']) for i in range(12)]
  assert loaded.images.shape == (12, 32, 32, 3) and loaded.images.dtype == np.uint8
  np.testing.assert_array_equal(loaded.images, expected)
  assert loaded.labels.tolist() == expected_labels
  assert len(loaded.class_names) == 100

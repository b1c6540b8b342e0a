"""--download against a local HTTP server serving small archives in the official layouts."""

import functools
import hashlib
import http.server
import io
import tarfile
import threading
import zipfile

import numpy as np
import pytest
from cifar_fixtures import write_cifar10

from beard_jax.data import download, real


@pytest.fixture
def server(tmp_path):
  """Serves `tmp_path / 'served'` over HTTP on a free local port; yields (folder, base URL)."""
  folder = tmp_path / 'served'
  folder.mkdir()
  handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
  httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  yield folder, f'http://127.0.0.1:{httpd.server_address[1]}'
  httpd.shutdown()


def _serve_cifar10(tmp_path, served):
  written = write_cifar10(tmp_path / 'official')
  archive = served / 'cifar-10-python.tar.gz'
  with tarfile.open(archive, 'w:gz') as tar:
    tar.add(tmp_path / 'official' / 'cifar-10-batches-py', arcname='cifar-10-batches-py')
  return written, hashlib.md5(archive.read_bytes()).hexdigest()


def test_download_verifies_unpacks_and_the_readers_load_it(tmp_path, server, monkeypatch):
  served, url = server
  written, md5 = _serve_cifar10(tmp_path, served)
  monkeypatch.setitem(download.ARCHIVES, 'cifar10', download.ARCHIVES['cifar10']._replace(md5=md5))
  data_dir = tmp_path / 'data'
  folder = download.download('cifar10', str(data_dir), mirror=url)
  assert folder == str(data_dir / 'cifar-10-batches-py')
  loaded = real.load_real_dataset('cifar10', 'test', str(data_dir))
  data, labels = written['test']
  np.testing.assert_array_equal(loaded.labels, labels)
  assert loaded.images.shape == (len(labels), 32, 32, 3)
  assert [p.name for p in data_dir.iterdir()] == ['cifar-10-batches-py']  # nothing else left
  (served / 'cifar-10-python.tar.gz').unlink()
  assert download.download('cifar10', str(data_dir), mirror=url) == folder  # not fetched again


def test_a_wrong_checksum_unpacks_nothing(tmp_path, server):
  served, url = server
  _serve_cifar10(tmp_path, served)  # Its MD5 is not the published one.
  data_dir = tmp_path / 'data'
  with pytest.raises(download.DownloadError, match='MD5 .* is not the published c58f3010'):
    download.download('cifar10', str(data_dir), mirror=url)
  assert list(data_dir.iterdir()) == []


def test_a_missing_archive_is_one_clear_error(tmp_path, server):
  _, url = server
  with pytest.raises(download.DownloadError, match='could not download .*cifar-100-python'):
    download.download('cifar100', str(tmp_path / 'data'), mirror=url)


def test_a_zip_member_outside_the_folder_is_refused(tmp_path, server, monkeypatch):
  served, url = server
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, 'w') as archive:
    archive.writestr('tiny-imagenet-200/wnids.txt', 'n0\n')
    archive.writestr('../escaped.txt', 'x')
  (served / 'tiny-imagenet-200.zip').write_bytes(buffer.getvalue())
  md5 = hashlib.md5(buffer.getvalue()).hexdigest()
  tiny = download.ARCHIVES['tinyimagenet']._replace(md5=md5)
  monkeypatch.setitem(download.ARCHIVES, 'tinyimagenet', tiny)
  data_dir = tmp_path / 'data'
  with pytest.raises(download.DownloadError, match="'../escaped.txt' would unpack outside"):
    download.download('tinyimagenet', str(data_dir), mirror=url)
  assert not (tmp_path / 'escaped.txt').exists() and list(data_dir.iterdir()) == []

"""`--download`: fetch a dataset's official archive into `--data_dir`, verify it, unpack it.

The archives and their published MD5 sums:

* CIFAR-10 and CIFAR-100, python versions, from the authors' page
  (https://www.cs.toronto.edu/~kriz/cifar.html lists the MD5 of each archive);
* Tiny-ImageNet (`tiny-imagenet-200.zip`, 248,100,043 bytes) from the CS231n site;
  Stanford publishes no checksum, so the MD5 is the one torchvision-style dataset
  classes across the community pin.

A download streams to `<data_dir>/.<name>.partial`, is checked against the MD5 and the
size the server announced, then unpacked into a temporary folder inside `data_dir`
(tar members through `tarfile`'s `data` filter; zip members refused if their path
leaves the folder) and moved into place with one rename, so an interrupted download or
a bad archive never leaves a folder the readers would take for data. A dataset already
unpacked is not fetched again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.request
import zipfile
from typing import NamedTuple

from beard_jax.errors import UserError

MIRROR_ENV = 'BEARD_DOWNLOAD_MIRROR'  # base URL serving the archives under their file names
_CHUNK = 1 << 20


class Archive(NamedTuple):
  """An official dataset archive.

  Attributes:
    url: where its authors publish it.
    md5: its published MD5 hex digest.
    folder: the top-level folder it unpacks to (what the readers look for in data_dir).
  """

  url: str
  md5: str
  folder: str

  @property
  def filename(self) -> str:
    return self.url.rsplit('/', 1)[-1]


ARCHIVES = {
  'cifar10': Archive(
    'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz',
    'c58f30108f718f92721af3b95e74349a',
    'cifar-10-batches-py',
  ),
  'cifar100': Archive(
    'https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz',
    'eb9058c3a382ffc7106e4002c42a8d85',
    'cifar-100-python',
  ),
  'tinyimagenet': Archive(
    'http://cs231n.stanford.edu/tiny-imagenet-200.zip',
    '90528d7ca1a48142e341f4ef8d21d0de',
    'tiny-imagenet-200',
  ),
}


class DownloadError(UserError, OSError):
  """A download that failed, or an archive that is not what its publisher published."""


def _fetch(url: str, destination: str, label: str) -> int:
  """Streams `url` to `destination`, logging progress; returns the bytes written."""
  with urllib.request.urlopen(url, timeout=60) as response, open(destination, 'wb') as out:
    announced = int(response.headers.get('Content-Length') or 0)
    written, last = 0, 0.0
    for chunk in iter(lambda: response.read(_CHUNK), b''):
      out.write(chunk)
      written += len(chunk)
      if time.monotonic() - last > 5:
        total = f' of {announced / 1e6:.1f}' if announced else ''
        sys.stderr.write(f'{label}: {written / 1e6:.1f}{total} MB\n')
        last = time.monotonic()
  if announced and written != announced:
    raise DownloadError(f'{url}: the download stopped at {written} of {announced} bytes; retry')
  return written


def _md5(path: str) -> str:
  digest = hashlib.md5(usedforsecurity=False)
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(_CHUNK), b''):
      digest.update(chunk)
  return digest.hexdigest()


def _unpack(archive_path: str, into: str, is_zip: bool) -> None:
  """Unpacks a .zip (no member outside `into`) or a tar archive (`tarfile`'s data filter)."""
  if is_zip:
    root = os.path.realpath(into)
    with zipfile.ZipFile(archive_path) as archive:
      for member in archive.namelist():
        target = os.path.realpath(os.path.join(into, member))
        if os.path.commonpath([root, target]) != root:
          raise DownloadError(f'{archive_path}: member {member!r} would unpack outside {into}')
      archive.extractall(into)
  else:
    with tarfile.open(archive_path) as archive:
      archive.extractall(into, filter='data')


def download(dataset: str, data_dir: str, mirror: str | None = None) -> str:
  """Makes sure `data_dir` holds the official archive of `dataset`, unpacked.

  Args:
    dataset: a canonical dataset name (`ARCHIVES`).
    data_dir: the folder the readers search (`--data_dir`); created if needed.
    mirror: a base URL serving the archive under its file name instead of the
      publisher (default: `$BEARD_DOWNLOAD_MIRROR`, else the publisher's URL).

  Returns:
    The unpacked folder.

  Raises:
    DownloadError: the fetch failed, or the archive's MD5 is not the published one
      (nothing is unpacked then, and the partial file is removed).
  """
  archive = ARCHIVES[dataset]
  folder = os.path.join(data_dir, archive.folder)
  if os.path.isdir(folder):
    return folder
  os.makedirs(data_dir, exist_ok=True)
  mirror = mirror or os.environ.get(MIRROR_ENV)
  url = f'{mirror.rstrip("/")}/{archive.filename}' if mirror else archive.url
  partial = os.path.join(data_dir, f'.{archive.filename}.partial')
  try:
    try:
      _fetch(url, partial, f'downloading {archive.filename}')
    except DownloadError:
      raise
    except OSError as e:
      raise DownloadError(
        f'could not download {url}: {e}; check the network or --data_dir'
      ) from None
    digest = _md5(partial)
    if digest != archive.md5:
      raise DownloadError(
        f'{url}: MD5 {digest} is not the published {archive.md5}; the file is corrupt or '
        'not the official archive (nothing was unpacked)'
      )
    staging = tempfile.mkdtemp(prefix=f'.{archive.folder}.', dir=data_dir)
    try:
      _unpack(partial, staging, is_zip=archive.filename.endswith('.zip'))
      unpacked = os.path.join(staging, archive.folder)
      if not os.path.isdir(unpacked):
        raise DownloadError(f'{url}: the archive holds no {archive.folder}/ folder')
      os.rename(unpacked, folder)
    finally:
      shutil.rmtree(staging, ignore_errors=True)
  finally:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(partial)
  return folder

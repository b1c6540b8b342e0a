"""Shared test setup: where the real data lives.

Tests read real data only through the `BEARD_DATA_DIR` environment variable. When it
is unset and `../shared/data` (relative to the repository root) exists, it defaults
to that folder; tests that need a file skip with a clear reason when it is missing.
"""

import os
import pathlib

import pytest

_REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
_DEFAULT_DATA_DIR = _REPO_ROOT.parent / 'shared' / 'data'

if 'BEARD_DATA_DIR' not in os.environ and _DEFAULT_DATA_DIR.is_dir():
  os.environ['BEARD_DATA_DIR'] = str(_DEFAULT_DATA_DIR)

# Under pytest-xdist (`make test` runs one worker per core) every worker and the
# processes it starts keep to one thread: two workers that each take both cores slow
# each other down many times over (ENVIRONMENT.md). Set before JAX or torch starts.
if 'PYTEST_XDIST_WORKER' in os.environ:
  _ONE_THREAD = '--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1'
  os.environ['XLA_FLAGS'] = f'{os.environ.get("XLA_FLAGS", "")} {_ONE_THREAD}'.strip()
  os.environ['OMP_NUM_THREADS'] = '1'


def _real_data_path(relative: str) -> pathlib.Path:
  """Returns `$BEARD_DATA_DIR/relative`, or skips the test when it is not there."""
  root = os.environ.get('BEARD_DATA_DIR')
  if not root:
    pytest.skip('BEARD_DATA_DIR is not set: no real data to test on')
  path = pathlib.Path(root) / relative
  if not path.exists():
    pytest.skip(f'real data file {path} is missing (BEARD_DATA_DIR={root})')
  return path


@pytest.fixture
def beard_data_dir() -> pathlib.Path:
  """The real-data root `$BEARD_DATA_DIR`; skips when it is unset or missing."""
  return _real_data_path('.')


@pytest.fixture(scope='session')
def real_data_path():
  """A function `relative -> Path` under `$BEARD_DATA_DIR` that skips when the file is missing."""
  return _real_data_path

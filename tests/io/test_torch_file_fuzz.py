"""Mutated real torch files either load or are refused with a `TorchFileError`, in bounded memory.

The mutants (see `torch_fuzz.py`) come from the real DC-distilled CIFAR-10 IPC-1
set, a real BEARD checkpoint and the IPC-1 set rewritten in the legacy format.
They are loaded in a child process whose address space is capped at 3 GiB, so a
MemoryError, a RecursionError, any other exception type, a crash or a load that
does not finish within 30 s fails the test. Seeded: every run sees the same files.
"""

import collections
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import pytest

_HERE = pathlib.Path(__file__).resolve().parent
_REPO = _HERE.parents[1]
SOURCES = (
  'dataset_pool/DC/res_DC_CIFAR10_ConvNet_1ipc_3000.pt',
  'beard_model_pool/DC_ConvNet_CIFAR10_50_None.pth',
)
MUTATIONS = ('truncate', 'flip', 'zip_field', 'pickle_int', 'pickle_bytes', 'legacy_numel')
_RAM_DISK = pathlib.Path('/dev/shm')  # Rewriting a file there is ~5x faster than on disk.


@pytest.fixture
def workdir(tmp_path):
  """Where the mutants are written: a RAM disk when there is one."""
  if not _RAM_DISK.is_dir():
    yield tmp_path
    return
  with tempfile.TemporaryDirectory(dir=_RAM_DISK) as directory:
    yield pathlib.Path(directory)


def _fuzz(real_data_path, workdir, count: int, seed: int) -> dict:
  """Runs `torch_fuzz.py` on `count` mutants in a child capped at 3 GiB; its JSON report."""
  sources = [str(real_data_path(s)) for s in SOURCES]
  paths = os.pathsep.join([str(_REPO), str(_REPO / 'tests' / 'data')])
  env = dict(os.environ, PYTHONPATH=paths, OPENBLAS_NUM_THREADS='1', OMP_NUM_THREADS='1')
  command = [sys.executable, str(_HERE / 'torch_fuzz.py'), '--count', str(count)]
  command += ['--seed', str(seed), '--workdir', str(workdir), '--memory-gib', '3', *sources]
  result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=count)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(result.stdout)
  print(f'{count} mutants in {report["seconds"]:.1f} s, peak RSS {report["peak_rss_mib"]:.0f} MiB')
  return report


def _check(report: dict, count: int) -> None:
  assert report['failure_count'] == 0, json.dumps(report['failures'], indent=1)
  outcomes, kinds = collections.Counter(), collections.Counter()
  for key, n in report['counts'].items():
    mutation, outcome = key.split(':')
    outcomes[outcome] += n
    kinds[mutation.split('/')[1]] += n
  assert sum(outcomes.values()) == count
  assert set(kinds) == set(MUTATIONS), kinds
  # Both outcomes are common: the mutations reach past the first check.
  assert outcomes['loaded'] > count // 20 and outcomes['refused'] > count // 2, outcomes


def test_5000_mutants_load_or_are_refused(real_data_path, workdir):
  _check(_fuzz(real_data_path, workdir, 5000, seed=0), 5000)


@pytest.mark.slow
def test_50000_mutants_load_or_are_refused(real_data_path, workdir):
  _check(_fuzz(real_data_path, workdir, 50_000, seed=1), 50_000)

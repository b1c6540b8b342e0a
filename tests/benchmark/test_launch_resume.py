"""launch.py end to end: a run killed with SIGKILL and restarted ends with exactly the
records of an uninterrupted run, none lost, none duplicated."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest
from pool_fixtures import REPO, comparable_records, read_records, write_model_pool


@pytest.fixture(scope='module')
def model_pool(tmp_path_factory):
  return write_model_pool(tmp_path_factory.mktemp('pool'), ['DC', 'DM'])


def _command(pool, data_dir, workdir):
  return [
    sys.executable,
    str(REPO / 'launch.py'),
    f'--config={REPO}/configs/default.py',
    f'--model_pool={pool}',
    f'--data_dir={data_dir}',
    f'--workdir={workdir}',
    '--ipc=10',
    '--attacks=fgsm,pgd',
    '--modes=untargeted',
    '--num_examples=32',
    '--batch_size=32',
    '--seed=7',
  ]


def _launch(pool, data_dir, workdir, env):
  """One whole run of `_command` to its end (raises if launch.py fails)."""
  subprocess.run(
    _command(pool, data_dir, workdir), check=True, env=env, capture_output=True, cwd=REPO,
    timeout=600,
  )  # fmt: skip


def _wait_for_records(path, count, process, timeout_s=600.0):
  """Returns once `path` holds `count` complete lines or `process` has exited."""
  deadline = time.monotonic() + timeout_s
  while process.poll() is None and time.monotonic() < deadline:
    if path.exists() and path.read_text().count('\n') >= count:
      return
    time.sleep(0.05)


def test_killed_and_resumed_run_equals_uninterrupted_run(model_pool, beard_data_dir, tmp_path):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  reference = tmp_path / 'reference'
  _launch(model_pool, beard_data_dir, reference, env)
  expected = comparable_records(reference / 'results.jsonl')
  assert len(expected) == 2 * 3  # Two models × (clean, fgsm, pgd).
  # The second model runs the first one's compiled programs (the resumed run below
  # compiles afresh after every kill, and must still give the same records).
  compiled = {}
  for record in read_records(reference):
    compiled.setdefault(record['method'], []).append(record['compile_seconds'] > 0)
  assert compiled == {'DC': [True] * 3, 'DM': [False] * 3}

  resumed = tmp_path / 'resumed'
  rng = random.Random(0)
  kills = 0
  # Kill once during start-up, then twice while cells are running: after the 2nd and
  # the 4th record, a random moment later. Waiting for records, not a fixed time, keeps
  # the kills inside the run however fast the machine is.
  for records_before_kill in (0, 2, 4):
    process = subprocess.Popen(
      _command(model_pool, beard_data_dir, resumed),
      env=env,
      cwd=REPO,
      stdout=subprocess.DEVNULL,
      stderr=subprocess.DEVNULL,
    )
    _wait_for_records(resumed / 'results.jsonl', records_before_kill, process)
    time.sleep(rng.uniform(0.5, 3.0))
    if process.poll() is None:
      os.kill(process.pid, signal.SIGKILL)
      process.wait()
      kills += 1
  _launch(model_pool, beard_data_dir, resumed, env)
  print(f'killed {kills} times')
  assert kills >= 2, 'the run finished before it could be killed; the test proves too little'
  got = comparable_records(resumed / 'results.jsonl')
  cells = [(r['method'], r['attack'], r['targeted']) for r in got]
  assert len(set(cells)) == len(cells), 'a cell was recorded twice'
  assert got == expected
  assert (resumed / 'report.md').exists()
  assert (resumed / 'leaderboards' / 'leaderboards.html').exists()


def test_a_workdir_of_another_protocol_is_refused(model_pool, beard_data_dir, tmp_path):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  command = _command(model_pool, beard_data_dir, tmp_path) + ['--attacks=fgsm']
  subprocess.run(command, check=True, env=env, capture_output=True, cwd=REPO)
  result = subprocess.run(
    command + ['--protocol=beard'], env=env, capture_output=True, text=True, cwd=REPO
  )
  assert result.returncode != 0
  assert 'holds results of another config' in result.stderr

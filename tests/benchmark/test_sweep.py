"""Sweep mode: cells split over tasks, then merged, equal one single run."""

import os
import subprocess

import pytest
from pool_fixtures import REPO, comparable_records, launch_command, write_model_pool


@pytest.fixture(scope='module')
def model_pool(tmp_path_factory):
  return write_model_pool(tmp_path_factory.mktemp('pool'), ['DC', 'DM', 'MTT'])


def _run(pool, data_dir, workdir, *extra):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  command = launch_command(pool, data_dir, workdir, *extra)
  subprocess.run(command, check=True, env=env, capture_output=True, cwd=REPO)


def test_two_tasks_then_merge_equal_a_single_run(model_pool, beard_data_dir, tmp_path):
  _run(model_pool, beard_data_dir, tmp_path / 'single')
  sweep = tmp_path / 'sweep'
  for task in (0, 1):
    _run(model_pool, beard_data_dir, sweep, '--num_tasks=2', f'--task_index={task}')
  task_files = sorted(p.name for p in sweep.glob('results.task-*'))
  assert task_files == ['results.task-0-of-2.jsonl', 'results.task-1-of-2.jsonl']
  sizes = [len(comparable_records(sweep / name)) for name in task_files]
  assert sizes == [6, 6]  # 3 models × 2 modes × (clean, fgsm) = 12 cells, dealt round-robin.
  _run(model_pool, beard_data_dir, sweep, '--num_tasks=2', '--merge')
  assert comparable_records(sweep / 'results.jsonl') == comparable_records(
    tmp_path / 'single' / 'results.jsonl'
  )
  assert (sweep / 'report.md').exists()

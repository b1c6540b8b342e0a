"""Sweep mode: cells split over tasks, then merged, equal one single run."""

import json
import os
import pathlib
import subprocess
import sys

import pytest
from pool_fixtures import write_model_pool

REPO = pathlib.Path(__file__).resolve().parents[2]
TIMING_FIELDS = {'attack_seconds', 'compile_seconds', 'ast', 'versions', 'model_path'}


@pytest.fixture(scope='module')
def model_pool(tmp_path_factory):
  return write_model_pool(tmp_path_factory.mktemp('pool'), ['DC', 'DM', 'MTT'])


def _run(pool, data_dir, workdir, *extra):
  command = [
    sys.executable,
    str(REPO / 'launch.py'),
    f'--model_pool={pool}',
    f'--data_dir={data_dir}',
    f'--workdir={workdir}',
    '--ipc=10',
    '--attacks=fgsm',
    '--modes=untargeted,targeted',
    '--num_examples=16',
    '--batch_size=16',
    *extra,
  ]
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  subprocess.run(command, check=True, env=env, capture_output=True, cwd=REPO)


def _records(path):
  records = [json.loads(line) for line in pathlib.Path(path).read_text().splitlines()]
  return sorted(
    ({k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in records),
    key=lambda r: (r['method'], r['attack'], r['targeted']),
  )


def test_two_tasks_then_merge_equal_a_single_run(model_pool, beard_data_dir, tmp_path):
  _run(model_pool, beard_data_dir, tmp_path / 'single')
  sweep = tmp_path / 'sweep'
  for task in (0, 1):
    _run(model_pool, beard_data_dir, sweep, '--num_tasks=2', f'--task_index={task}')
  task_files = sorted(p.name for p in sweep.glob('results.task-*'))
  assert task_files == ['results.task-0-of-2.jsonl', 'results.task-1-of-2.jsonl']
  sizes = [len(_records(sweep / name)) for name in task_files]
  assert sizes == [6, 6]  # 3 models × 2 modes × (clean, fgsm) = 12 cells, dealt round-robin.
  _run(model_pool, beard_data_dir, sweep, '--num_tasks=2', '--merge')
  assert _records(sweep / 'results.jsonl') == _records(tmp_path / 'single' / 'results.jsonl')
  assert (sweep / 'report.md').exists()

"""CIFAR-100 end to end from the official python layout (no copy is shared: a small
synthetic folder in the exact format): build a random coreset, train, attack, summarise."""

import json
import os
import pathlib
import subprocess
import sys

from cifar_fixtures import write_cifar100

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_cifar100_from_the_official_layout_runs_end_to_end(tmp_path):
  write_cifar100(tmp_path / 'data', count=200)
  command = [
    sys.executable,
    str(REPO / 'launch.py'),
    '--dataset=cifar100',
    '--ipc=1',
    f'--data_dir={tmp_path / "data"}',
    f'--distill_dir={tmp_path / "pool"}',
    '--distill=random',
    f'--workdir={tmp_path / "run"}',
    '--seeds=1',
    '--epochs=1',
    '--num_examples=8',
    '--attacks=fgsm',
    '--modes=untargeted,targeted',
  ]
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = (tmp_path / 'run' / 'results.jsonl').read_text().splitlines()
  records = [json.loads(line) for line in lines]
  assert {(r['method'], r['dataset'], r['attack'], r['targeted']) for r in records} == {
    ('RANDOM', 'cifar100', a, t) for a in ('clean', 'fgsm') for t in (False, True)
  }
  assert 'cifar100' in result.stdout and 'report:' in result.stdout

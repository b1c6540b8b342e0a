"""The mission's command, `launch.py --dataset=tinyimagenet --ipc=N`, on a tiny budget.

Only BEARD_DATA_DIR is given (it is --data_dir's default): no dataset pool exists, so the
run builds a DM set from Tiny-ImageNet's training images, trains on it, attacks, and prints
the summary (one method: a 64x64 training step costs seconds here, and several methods in
one run are the CIFAR launch tests' business). Then --distilled_set picks one file alone.
"""

import json
import os
import subprocess
import sys

from pool_fixtures import REPO

from beard_jax.benchmark.distill_pool import distilled_sets, single_set_method
from beard_jax.benchmark.plan import resolve_plan
from configs import default


def _launch(tmp_path, *flags):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  command = [
    sys.executable,
    str(REPO / 'launch.py'),
    '--dataset=tinyimagenet',
    '--ipc=1',
    f'--distill_dir={tmp_path / "pool"}',
    '--distill=dm',
    '--distill_iterations=1',
    '--distill_batch_real=4',
    '--seeds=1',
    '--epochs=1',
    '--num_examples=8',
    '--attacks=fgsm',
    '--modes=untargeted',
    *flags,
  ]
  return subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO, timeout=900)


def _records(workdir):
  return [json.loads(line) for line in (workdir / 'results.jsonl').read_text().splitlines()]


def test_the_headline_command_builds_trains_attacks_and_summarises(beard_data_dir, tmp_path):
  result = _launch(tmp_path, f'--workdir={tmp_path / "run"}')
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'report:' in result.stdout and 'DM' in result.stdout
  records = _records(tmp_path / 'run')
  assert {(r['method'], r['attack']) for r in records} == {('DM', 'clean'), ('DM', 'fgsm')}
  assert all(r['dataset'] == 'tinyimagenet' and r['num_examples'] == 8 for r in records)
  sidecar = json.loads(
    (tmp_path / 'pool' / 'DM' / 'res_DM_TinyImageNet_ConvNet_1ipc.json').read_text()
  )
  assert sidecar['iterations'] == 1 and sidecar['hyperparameters']['batch_real'] == 4


def test_a_single_set_is_benchmarked_alone_under_its_name(tmp_path):
  own = tmp_path / 'my_set.npz'
  own.write_bytes(b'')
  config = default.get_config()
  config.update({'distilled_set': str(own), 'methods': 'MINE'})
  assert distilled_sets(resolve_plan(config)) == {'MINE': own}
  config.methods = ''
  assert single_set_method(resolve_plan(config)) == 'MY_SET'
  named = tmp_path / 'res_DM_CIFAR10_ConvNet_10ipc.pt'
  named.write_bytes(b'')
  config.distilled_set = str(named)
  assert distilled_sets(resolve_plan(config)) == {'DM': named}

"""Helpers of the launch.py tests: a random-init model pool, the command, comparable records."""

import json
import os
import pathlib
import subprocess
import sys

import jax

from beard_jax.data.specs import get_dataset_spec
from beard_jax.models import ConvNet, init_params
from beard_jax.models.checkpoints import save_checkpoint

REPO = pathlib.Path(__file__).resolve().parents[2]
# Record fields that legitimately differ between two runs of the same cells.
TIMING_FIELDS = {'attack_seconds', 'compile_seconds', 'ast', 'versions', 'model_path'}


def write_model_pool(pool, methods):
  """Saves one random-init CIFAR-10 ConvNet per method (IPC 10, seed 0) into `pool`."""
  spec = get_dataset_spec('cifar10')
  for index, method in enumerate(methods):
    params = init_params(ConvNet(10), spec, jax.random.key(index))
    save_checkpoint(
      str(pool / f'{method}_seed0'),
      params,
      {'method': method, 'dataset': 'cifar10', 'ipc': 10, 'seed': 0, 'training': 'standard'},
    )
  return pool


def launch_command(pool, data_dir, workdir, *extra, num_examples=16):
  """`launch.py` on `pool`: FGSM in both modes, batches of 16, plus `extra` flags."""
  return [
    sys.executable,
    str(REPO / 'launch.py'),
    f'--model_pool={pool}',
    f'--data_dir={data_dir}',
    f'--workdir={workdir}',
    '--ipc=10',
    '--attacks=fgsm',
    '--modes=untargeted,targeted',
    f'--num_examples={num_examples}',
    '--batch_size=16',
    *extra,
  ]


def comparable_records(path):
  """The records of a results file without timing fields, in a fixed order."""
  records = [json.loads(line) for line in pathlib.Path(path).read_text().splitlines()]
  return sorted(
    ({k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in records),
    key=lambda r: (r['method'], r['attack'], r['targeted']),
  )


def beard_checkpoint_pool(root, real_data_path, names):
  """A model pool folder under `root` linking BEARD's checkpoints `names` (IPC 50)."""
  pool = root / 'pool'
  pool.mkdir()
  for name in names:
    (pool / name).symlink_to(real_data_path(f'beard_model_pool/{name}'))
  return pool


def launch_ok(command):
  """Runs `launch.py` (CPU), asserting exit code 0; returns the env it ran with."""
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return env


def read_records(workdir):
  """The records of `<workdir>/results.jsonl`, in file order."""
  return [json.loads(line) for line in (workdir / 'results.jsonl').read_text().splitlines()]

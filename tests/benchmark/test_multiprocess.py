"""Two processes × 4 CPU devices (`jax.distributed`, gloo) give the numbers of one process × 8.

- `launch.py`: every attack batch is split over the 8 devices of both processes, each
  process feeding its own slice; only the primary process writes, and the records must
  equal those of a single-process run on 8 devices, once each.
- `train_seeds`: 8 seeds sharded over both processes' devices are gathered on every
  process and equal the single-process run.
"""

import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from pool_fixtures import REPO, comparable_records, launch_command, write_model_pool

_TRAIN_SCRIPT = textwrap.dedent("""
  import sys
  import jax, numpy as np
  from beard_jax import sharding
  from beard_jax.data.specs import DatasetSpec
  from beard_jax.models import ConvNet
  from beard_jax.train import TrainRecipe, train_seeds
  out, address, count, index = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
  sharding.initialize_distributed(address, count, index)
  assert jax.device_count() == 8, jax.devices()
  spec = DatasetSpec('tiny16', 4, 16, 3, (0.5, 0.4, 0.3), (0.25, 0.2, 0.3))
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(24, 16, 16, 3)).astype(np.float32)
  labels = (np.arange(24) % 4).astype(np.int32)
  recipe = TrainRecipe(batch_size=8, epochs=2, augmentation='crop_flip')
  stacked = train_seeds(range(8), images, labels, recipe, ConvNet(4, width=8, depth=1), spec,
                        mesh=sharding.make_mesh(sharding.SEED_AXIS))
  leaves = jax.tree.leaves(stacked)
  np.savez(out, *[np.asarray(leaf) for leaf in leaves])
""")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _env(devices: int) -> dict:
  return dict(
    os.environ,
    JAX_PLATFORMS='cpu',
    XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
  )


def _run_two_processes(command_for_index) -> None:
  address = f'127.0.0.1:{_free_port()}'
  processes = [
    subprocess.Popen(
      command_for_index(index, address),
      env=_env(4),
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
      cwd=REPO,
    )
    for index in (0, 1)
  ]
  for process in processes:
    _, stderr = process.communicate(timeout=900)
    assert process.returncode == 0, stderr[-3000:]


def test_launch_on_two_processes_equals_one(beard_data_dir, tmp_path):
  pool = write_model_pool(tmp_path / 'pool', ['DC', 'DM'])
  subprocess.run(
    launch_command(pool, beard_data_dir, tmp_path / 'one', num_examples=32),
    check=True,
    env=_env(8),
    capture_output=True,
    cwd=REPO,
  )
  _run_two_processes(
    lambda index, address: launch_command(
      pool,
      beard_data_dir,
      tmp_path / 'two',
      '--num_processes=2',
      f'--process_id={index}',
      f'--coordinator_address={address}',
      num_examples=32,
    )
  )
  single = comparable_records(tmp_path / 'one' / 'results.jsonl')
  multi = comparable_records(tmp_path / 'two' / 'results.jsonl')
  assert len(single) == 2 * 2 * 2  # 2 models × 2 modes × (clean, fgsm)
  # Mean perturbation norms are float sums over a differently split batch.
  norms = [{k: r.pop(k) for k in ('mean_l2', 'mean_linf')} for r in single + multi]
  assert multi == single
  for one, two in zip(norms[: len(single)], norms[len(single) :], strict=True):
    assert one == pytest.approx(two, rel=1e-4)
  assert (tmp_path / 'two' / 'report.md').exists()


@pytest.mark.slow  # Seed sharding: tests/train/test_sharded_training.py (8 devices, in-process).
def test_seeds_sharded_over_two_processes_equal_one(tmp_path):
  subprocess.run(
    [sys.executable, '-c', _TRAIN_SCRIPT, str(tmp_path / 'one.npz'), '', '1', '0'],
    check=True,
    env=_env(8),
    capture_output=True,
    cwd=REPO,
  )
  _run_two_processes(
    lambda index, address: [
      sys.executable,
      '-c',
      _TRAIN_SCRIPT,
      str(tmp_path / f'two-{index}.npz'),
      address,
      '2',
      str(index),
    ]
  )
  one = np.load(tmp_path / 'one.npz')
  for index in (0, 1):
    two = np.load(tmp_path / f'two-{index}.npz')
    assert sorted(two.files) == sorted(one.files)
    for name in one.files:
      np.testing.assert_allclose(two[name], one[name], atol=1e-6)

"""Two processes × 4 CPU devices (`jax.distributed`, gloo) give the records of one process × 8.

The whole of `launch.py` runs: the 8 seeds of the DC IPC-1 set train sharded over the
8 devices of both processes, the primary process saves the checkpoints while the other
waits at a barrier, and every attack batch is split over all 8 devices with each process
feeding its own slice. Only the primary process writes; the records must equal a
single-process run on 8 devices, once each.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import pytest
from test_sweep import TIMING_FIELDS

REPO = pathlib.Path(__file__).resolve().parents[2]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _command(data_dir, workdir, *extra):
  return [
    sys.executable,
    str(REPO / 'launch.py'),
    f'--dataset_pool={data_dir / "dataset_pool"}',
    f'--data_dir={data_dir}',
    f'--workdir={workdir}',
    '--dataset=cifar10',
    '--ipc=1',
    '--methods=DC',
    '--seeds=8',
    '--epochs=2',
    '--attacks=fgsm',
    '--modes=untargeted,targeted',
    '--num_examples=32',
    '--batch_size=16',
    *extra,
  ]


def _env(devices: int) -> dict:
  return dict(
    os.environ,
    JAX_PLATFORMS='cpu',
    XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
  )


def _records(path):
  lines = pathlib.Path(path).read_text().splitlines()
  return sorted(
    ({k: v for k, v in json.loads(line).items() if k not in TIMING_FIELDS} for line in lines),
    key=lambda r: (r['seed'], r['attack'], r['targeted']),
  )


def test_two_processes_equal_one(real_data_path, tmp_path):
  data_dir = real_data_path('.')
  real_data_path('dataset_pool/DC/res_DC_CIFAR10_ConvNet_1ipc_3000.pt')
  subprocess.run(
    _command(data_dir, tmp_path / 'one'), check=True, env=_env(8), capture_output=True, cwd=REPO
  )
  address = f'127.0.0.1:{_free_port()}'
  processes = [
    subprocess.Popen(
      _command(
        data_dir,
        tmp_path / 'two',
        '--num_processes=2',
        f'--process_id={index}',
        f'--coordinator_address={address}',
      ),
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
  single = _records(tmp_path / 'one' / 'results.jsonl')
  multi = _records(tmp_path / 'two' / 'results.jsonl')
  assert len(single) == 8 * 2 * 2  # 8 seeds × 2 modes × (clean, fgsm)
  # Mean perturbation norms are float sums over a differently split batch.
  norms = [{k: r.pop(k) for k in ('mean_l2', 'mean_linf')} for r in single + multi]
  assert multi == single
  for one, two in zip(norms[: len(single)], norms[len(single) :], strict=True):
    assert one == pytest.approx(two, rel=1e-4)
  assert sorted(p.name for p in (tmp_path / 'two' / 'models').iterdir()) == sorted(
    p.name for p in (tmp_path / 'one' / 'models').iterdir()
  )

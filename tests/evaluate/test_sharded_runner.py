"""The attack runner (transfer programs too) on 8 CPU devices gives the numbers of one device.

Runs in a subprocess so that `--xla_force_host_platform_device_count=8` is set
before JAX starts, whatever the rest of the test session did.
"""

import os
import pathlib
import subprocess
import sys
import textwrap

REPO = pathlib.Path(__file__).resolve().parents[2]

_SCRIPT = textwrap.dedent("""
  import jax, numpy as np
  import attacks
  from beard_jax import sharding
  from beard_jax.data.specs import get_dataset_spec
  from beard_jax.evaluate.runner import run_attack
  from beard_jax.models import ConvNet, init_params, make_apply_fn
  assert jax.device_count() == 8, jax.devices()
  spec = get_dataset_spec('cifar10')
  model = ConvNet(10, width=16)
  params = init_params(model, spec, jax.random.key(0))
  apply_fn = make_apply_fn(model, spec, 'pixels')
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(46, 32, 32, 3)).astype(np.float32)  # 16, 16, 14 padded to 16
  labels = rng.integers(0, 10, size=46).astype(np.int32)
  attack = attacks.get_attack('pgd', eps=8 / 255, step_size=2 / 255, steps=3, random_start=True)
  runs = [run_attack(attack, apply_fn, params, images, labels, key=jax.random.key(1),
                     batch_size=16, mesh=mesh)
          for mesh in (None, sharding.make_mesh(sharding.BATCH_AXIS))]
  for field in ('clean_correct', 'adv_correct', 'adv_pred', 'success'):
    np.testing.assert_array_equal(getattr(runs[0], field), getattr(runs[1], field))
  np.testing.assert_allclose(runs[0].linf, runs[1].linf, atol=1e-6)
  np.testing.assert_allclose(runs[0].l2, runs[1].l2, rtol=1e-4, atol=1e-5)
  try:
    run_attack(attack, apply_fn, params, images, labels, key=jax.random.key(1), batch_size=12,
               mesh=sharding.make_mesh(sharding.BATCH_AXIS))
  except ValueError as e:
    assert 'multiple of the number of devices' in str(e)
  else:
    raise AssertionError('batch 12 on 8 devices was accepted')
  from beard_jax.evaluate.runner import compile_transfer, run_transfer
  other = init_params(model, spec, jax.random.key(5))
  targets = jax.tree.map(lambda *a: np.stack(a), params, other)
  transfers = []
  for mesh in (None, sharding.make_mesh(sharding.BATCH_AXIS)):
    compiled = compile_transfer(lambda v: attack, apply_fn, params, targets, (32, 32, 3),
                                batch_size=16, targeted=False, mesh=mesh)
    transfers.append(run_transfer(compiled, images, labels, key=jax.random.key(1)))
  for single, sharded in zip(*transfers):
    np.testing.assert_array_equal(single.adv_pred, sharded.adv_pred)
    np.testing.assert_array_equal(single.clean_correct, sharded.clean_correct)
  np.testing.assert_array_equal(transfers[0][0].adv_pred, runs[0].adv_pred)
  print('sharded == single')
""")


def test_sharded_attack_run_equals_single_device():
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8', JAX_PLATFORMS='cpu')
  result = subprocess.run(
    [sys.executable, '-c', _SCRIPT], env=env, capture_output=True, text=True, cwd=REPO, timeout=600
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'sharded == single' in result.stdout

"""Training with the seed axis sharded over 8 CPU devices equals one device.

A subprocess sets `--xla_force_host_platform_device_count=8` before JAX starts.
"""

import os
import pathlib
import subprocess
import sys
import textwrap

REPO = pathlib.Path(__file__).resolve().parents[2]

_SCRIPT = textwrap.dedent("""
  import jax, numpy as np
  from beard_jax import sharding
  from beard_jax.data.specs import DatasetSpec
  from beard_jax.models import ConvNet
  from beard_jax.train import TrainRecipe, train_seeds
  assert jax.device_count() == 8
  spec = DatasetSpec('tiny16', 4, 16, 3, (0.5, 0.4, 0.3), (0.25, 0.2, 0.3))
  model = ConvNet(num_classes=4, width=8, depth=1)
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(24, 16, 16, 3)).astype(np.float32)
  labels = (np.arange(24) % 4).astype(np.int32)
  recipe = TrainRecipe(batch_size=8, epochs=2, augmentation='crop_flip')
  seeds = list(range(8))
  single = train_seeds(seeds, images, labels, recipe, model, spec, seed_axis='vmap')
  mesh = sharding.make_mesh(sharding.SEED_AXIS)
  sharded = train_seeds(seeds, images, labels, recipe, model, spec, mesh=mesh)
  leaf = jax.tree.leaves(sharded)[0]
  assert len(leaf.sharding.device_set) == 8, leaf.sharding
  diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
             for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(sharded)))
  assert diff < 1e-5, diff
  print('sharded == single', diff)
""")


def test_seed_axis_sharded_over_8_devices_equals_one_device():
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8', JAX_PLATFORMS='cpu')
  result = subprocess.run(
    [sys.executable, '-c', _SCRIPT], env=env, capture_output=True, text=True, cwd=REPO, timeout=600
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'sharded == single' in result.stdout

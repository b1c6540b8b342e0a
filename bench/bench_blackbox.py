"""What `--transfer` and `--sweep` save: one program against separate ones, compile included.

* Transfer (PGD-10, `beard` settings, BEARD's six CIFAR-10 checkpoints): every model as
  the source, its adversarials scored on all six.
  - `ours`: `runner.compile_transfer` once, the targets' clean predictions once
    (`predict_clean`), then `run_transfer` per source (the craft and the six scorings
    in one program; the source is an argument).
  - `separate`: per source, a jitted crafting program returning the adversarials, then
    one jitted forward per target (the straightforward loop; programs compiled once).
* Sweep (PGD-10 over `--eps_points` values of ε on BEARD's DC checkpoint):
  - `ours`: one `compile_attack` with ε traced, `run_compiled` per value.
  - `separate`: `run_attack` per value (what five runs with one ε each compile and run).

Reported: wall seconds of each side including compilation, the compile part, and the
ratio separate / ours. Times one pass of each side (compilation is part of what is
measured, so there is nothing to warm up); run it on a quiet machine.

  BEARD_DATA_DIR=../shared/data .venv/bin/python bench/bench_blackbox.py --num_images=256
"""

from __future__ import annotations

import time

import common  # bench-local: puts the repo root on sys.path
import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

import attacks
from beard_jax import protocols
from beard_jax.data.specs import get_dataset_spec
from beard_jax.evaluate.runner import (
  compile_attack,
  compile_transfer,
  predict_clean,
  run_attack,
  run_compiled,
  run_transfer,
)
from beard_jax.models.convnet import ConvNet, make_apply_fn
from beard_jax.models.pool import discover_models, load_model_params

FLAGS = flags.FLAGS
flags.DEFINE_integer('num_images', 256, 'first N CIFAR-10 test images')
flags.DEFINE_integer('batch_size', 256, 'attack batch')
flags.DEFINE_enum('target_axis', None, ['map', 'vmap'], 'targets of ours (default: backend)')
flags.DEFINE_list('eps_points', ['2/255', '4/255', '6/255', '8/255', '10/255'], 'sweep values')


def _pgd(**overrides):
  hparams = dict(protocols.BEARD.attack_hparams['pgd'], **overrides)
  return attacks.get_attack('pgd', **hparams)


def _padded(rows: np.ndarray, size: int) -> np.ndarray:
  """`rows` padded to `size` by repeating the first (as the runner pads its last batch)."""
  return np.concatenate([rows, np.repeat(rows[:1], size - len(rows), axis=0)])


def time_transfer(all_params, apply_fn, images) -> dict[str, tuple[float, float]]:
  """{side: (wall seconds, compile seconds)} of the whole matrix, untargeted PGD-10."""
  x, y = images.nhwc, images.labels
  batch = min(FLAGS.batch_size, len(y))
  stacked = jax.tree.map(lambda *leaves: np.stack(leaves), *all_params)
  start = time.perf_counter()
  compiled = compile_transfer(
    lambda value: _pgd(), apply_fn, all_params[0], stacked, x.shape[1:],
    batch_size=batch, targeted=False, target_axis=FLAGS.target_axis,
  )  # fmt: skip
  clean = predict_clean(compiled, x)
  for params in all_params:
    key = jax.random.key(0)
    run_transfer(compiled, x, y, key=key, source_params=params, clean_predictions=clean)
  ours = (time.perf_counter() - start, compiled.compile_seconds)

  start = time.perf_counter()
  attack = _pgd()
  craft = jax.jit(lambda p, xb, yb: attack(apply_fn, p, xb, yb, jax.random.key(0)))
  forward = jax.jit(lambda p, xb: jnp.argmax(apply_fn(p, xb), -1))
  compile_start = time.perf_counter()
  craft = craft.lower(all_params[0], x[:batch], y[:batch]).compile()
  forward = forward.lower(all_params[0], x[:batch]).compile()
  compile_seconds = time.perf_counter() - compile_start
  for source in all_params:
    for lo in range(0, len(y), batch):
      xb, yb = (_padded(a[lo : lo + batch], batch) for a in (x, y))
      x_adv = craft(source, xb, yb)
      for target in all_params:
        np.asarray(forward(target, x_adv))
  separate = (time.perf_counter() - start, compile_seconds)
  return {'ours': ours, 'separate': separate}


def time_sweep(params, apply_fn, images) -> dict[str, tuple[float, float]]:
  """{side: (wall seconds, compile seconds)} of the ε sweep."""
  from fractions import Fraction

  values = [float(Fraction(v)) for v in FLAGS.eps_points]
  x, y = images.nhwc, images.labels
  batch = min(FLAGS.batch_size, len(y))
  fixed = dict(protocols.BEARD.attack_hparams['pgd'])
  start = time.perf_counter()
  compiled = compile_attack(
    attacks.traced_attack_maker('pgd', fixed, 'eps'), apply_fn, params, x.shape[1:],
    batch_size=batch, targeted=False,
  )  # fmt: skip
  for value in values:
    run_compiled(compiled, x, y, key=jax.random.key(0), value=value)
  ours = (time.perf_counter() - start, compiled.compile_seconds)
  start, compile_seconds = time.perf_counter(), 0.0
  for value in values:
    attack = _pgd(eps=value)
    run = run_attack(attack, apply_fn, params, x, y, key=jax.random.key(0), batch_size=batch)
    compile_seconds += run.compile_seconds
  separate = (time.perf_counter() - start, compile_seconds)
  return {'ours': ours, 'separate': separate}


def main(argv):
  del argv
  spec = get_dataset_spec('cifar10')
  model = ConvNet(spec.num_classes)
  apply_fn = make_apply_fn(model, spec, 'normalized')
  entries = discover_models(str(common.data_dir() / 'beard_model_pool'), 'cifar10')
  all_params = [load_model_params(e, model, spec.image_size) for e in entries]
  images = common.load_test_images(FLAGS.num_images)
  print(common.machine_line())
  print(f'{FLAGS.num_images} images, batch {FLAGS.batch_size}, {len(entries)} models, PGD-10')
  rows = []
  for name, result in (
    (f'transfer {len(entries)}x{len(entries)}', time_transfer(all_params, apply_fn, images)),
    (f'sweep {len(FLAGS.eps_points)} eps', time_sweep(all_params[0], apply_fn, images)),
  ):
    (ours, ours_compile), (separate, separate_compile) = result['ours'], result['separate']
    rows.append([name, f'{ours:.1f}', f'{ours_compile:.1f}', f'{separate:.1f}',
                 f'{separate_compile:.1f}', f'{separate / ours:.2f}x'])  # fmt: skip
  header = ['what', 'ours s', 'ours compile s', 'separate s', 'separate compile s', 'ratio']
  print(common.format_table(header, rows))


if __name__ == '__main__':
  app.run(main)

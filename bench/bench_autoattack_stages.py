"""Where AutoAttack's time goes: each stage on the samples it sees, ours against torchattacks.

AutoAttack runs APGD-CE on every image, then APGD-T, FAB-T and Square on the images every
earlier stage left robust. This bench runs our APGD-CE on all `--num_images` (`beard`
protocol, BEARD's DC checkpoint), takes the images it leaves robust, and times APGD-T and
FAB-T on those alone, on both sides (torchattacks' `APGD`, `APGDT`, `FAB(multi_targeted)`
with AutoAttack-in-torchattacks' settings: 10 steps, 9 target classes). Then our first three
stages inside AutoAttack (Square given no queries) for each `--chunks` value. Square itself is
timed by `bench_attacks.py --attacks=square`. Each timing is the best of `--repeats` runs after
a warm-up; our compile is apart.

  BEARD_DATA_DIR=../shared/data python bench/bench_autoattack_stages.py --num_images=50
"""

from __future__ import annotations

import time

import common  # bench-local: puts the repo root on sys.path
import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from attacks import get_attack
from beard_jax.protocols import BEARD

FLAGS = flags.FLAGS
flags.DEFINE_integer('num_images', 50, 'CIFAR-10 test images (one batch)')
flags.DEFINE_list('chunks', ['8', '16', '32'], 'chunk values for the first-three-stages rows')
flags.DEFINE_integer('repeats', 2, 'timed runs per row after a warm-up (best reported)')

STEPS = 10  # AutoAttack-in-torchattacks never overrides its sub-attacks' 10 steps.
N_TARGET_CLASSES = 9


def best_of(run) -> float:
  """The best of `--repeats` timed calls of `run()`, after one untimed call."""
  run()
  times = []
  for _ in range(FLAGS.repeats):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
  return min(times)


def ours(models, name, x, y, **hparams):
  """(seconds, x_adv) of our attack `name` on one batch."""
  attack = get_attack(name, **hparams)
  key = jax.random.key(0)
  compiled, _ = common.compile_jit(
    lambda p, xx, yy, k: attack(models.apply_fn, p, xx, yy, k), models.params, x, y, key
  )
  outputs = []

  def run():
    outputs[:] = [common.block(compiled(models.params, x, y, key))]

  return best_of(run), outputs[0]


def theirs(atk, x, y) -> float:
  """Seconds of the torchattacks object `atk` on the same batch."""
  xt = common.to_torch(np.ascontiguousarray(np.transpose(np.asarray(x), (0, 3, 1, 2))))
  yt = common.to_torch(np.asarray(y).astype(np.int64))

  def run():
    atk(xt, yt)
    common.torch_sync()

  return best_of(run)


def main(argv):
  del argv
  import torchattacks

  models = common.load_models()
  images = common.load_test_images(FLAGS.num_images)
  x, y = jnp.asarray(images.nhwc), jnp.asarray(images.labels)
  eps = BEARD.attack_hparams['autoattack']['eps']
  net = models.torch_model
  print(common.machine_line())
  rows = []
  seconds, x_adv = ours(models, 'apgd_ce', x, y, eps=eps, steps=STEPS)
  theirs_apgd = torchattacks.APGD(net, norm='Linf', eps=eps, steps=STEPS, loss='ce')
  rows.append(['APGD-CE', len(y), seconds, theirs(theirs_apgd, x, y)])
  robust = np.asarray(jnp.argmax(models.apply_fn(models.params, x_adv), -1) == y)
  if not robust.any():
    raise SystemExit('APGD-CE left no image robust: nothing for APGD-T and FAB-T; use more images')
  xr, yr = x[robust], y[robust]
  targeted = dict(eps=eps, steps=STEPS, n_target_classes=N_TARGET_CLASSES)
  for name, atk in (
    ('apgd_t', torchattacks.APGDT(net, norm='Linf', eps=eps, steps=STEPS, n_classes=10)),
    ('fab_t', torchattacks.FAB(net, norm='Linf', eps=eps, steps=STEPS, n_classes=10,
                               multi_targeted=True)),
  ):  # fmt: skip
    rows.append([name, len(yr), ours(models, name, xr, yr, **targeted)[0], theirs(atk, xr, yr)])
  aa = dict(BEARD.attack_hparams['autoattack'], n_queries=0)
  for chunk in map(int, FLAGS.chunks):
    seconds, _ = ours(models, 'autoattack', x, y, chunk=chunk, **aa)
    rows.append([f'AutoAttack without Square queries, chunk {chunk}', len(y), seconds, ''])
  header = ['stage', 'images', 'ours s', 'theirs s']
  print(common.format_table(header, rows))


if __name__ == '__main__':
  app.run(main)

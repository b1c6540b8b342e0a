"""How our PGD's time scales with batch size, steps and number of classes.

PGD-L∞ as in the `beard` protocol (ε 8/255, step 2/225, no random start, clamp
[0, 1]) on randomly initialised ConvNet-128-3 models and random normal inputs
(timing does not depend on the weights: PGD has no early stop). Three sweeps:
batch size (10 steps, K 10, 32 px), steps (batch 128, K 10, 32 px) and classes
(batch 128, 10 steps; K 10 and 100 at 32 px, K 200 at 64 px with depth 3, so the
classifier sees 8×8×128 features). `--reference` also times torchattacks' PGD
on a PyTorch ConvNet of the same shape, alternating.

  BEARD_DATA_DIR=../shared/data .venv/bin/python bench/bench_scaling.py --repeats=3
"""

from __future__ import annotations

import common  # bench-local: puts the repo root on sys.path
import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from attacks import get_attack
from beard_jax.models.convnet import ConvNet

FLAGS = flags.FLAGS
flags.DEFINE_list('batch_sizes', ['32', '64', '128', '256'], 'batch sizes of the first sweep')
flags.DEFINE_list('steps', ['1', '5', '10', '20'], 'PGD steps of the second sweep')
flags.DEFINE_list('classes', ['10', '100', '200'], 'K of the third sweep (200 runs at 64 px)')
flags.DEFINE_integer('fixed_batch', 128, 'batch size of the steps and classes sweeps')
flags.DEFINE_integer('repeats', 3, 'alternating rounds per point (medians reported)')
flags.DEFINE_bool('reference', False, "also time torchattacks' PGD (PyTorch, 2 threads)")

PGD = dict(eps=8 / 255, step_size=2 / 225, random_start=False, clip_min=0.0, clip_max=1.0)


def point(batch: int, steps: int, classes: int, size: int) -> list:
  """One row: [batch, steps, K, px, ours ms/batch, ours img/s, compile s, theirs img/s, ratio]."""
  model = ConvNet(classes)
  rng = np.random.default_rng(0)
  x_np = rng.standard_normal((batch, size, size, 3)).astype(np.float32)
  y_np = rng.integers(0, classes, batch).astype(np.int32)
  x, y = jnp.asarray(x_np), jnp.asarray(y_np)
  params = model.init(jax.random.key(0), x[:1])
  attack = get_attack('pgd', steps=steps, **PGD)

  def program(params, x, y, key):
    return attack(model.apply, params, x, y, key)

  key = jax.random.key(1)
  compiled, compile_seconds = common.compile_jit(program, params, x, y, key)
  runs = {'ours': lambda: common.block(compiled(params, x, y, key))}
  runs['ours']()
  if FLAGS.reference:
    import torchattacks

    net = common.torch_convnet_module().TorchConvNet(classes, image_size=size)
    net = net.to(common.torch_device()).eval()
    for p in net.parameters():
      p.requires_grad_(False)
    atk = torchattacks.PGD(
      net, eps=PGD['eps'], alpha=PGD['step_size'], steps=steps, random_start=False
    )
    xt = common.to_torch(np.ascontiguousarray(x_np.transpose(0, 3, 1, 2)))
    yt = common.to_torch(y_np.astype(np.int64))
    runs['theirs'] = lambda: (atk(xt, yt), common.torch_sync())
    runs['theirs']()
  times = common.time_alternating(runs, FLAGS.repeats)
  ours = common.median(times['ours'])
  theirs = common.median(times['theirs']) if 'theirs' in times else float('nan')
  return [
    batch,
    steps,
    classes,
    size,
    1000 * ours,
    batch / ours,
    compile_seconds,
    batch / theirs,
    theirs / ours,
  ]


def main(argv):
  del argv
  print(common.machine_line())
  print(f'PGD-Linf (beard hparams), random-init ConvNet-128-3, {FLAGS.repeats} repeats, medians')
  header = [
    'batch',
    'steps',
    'K',
    'px',
    'ours ms/batch',
    'ours img/s',
    'compile s',
    'theirs img/s',
    'ratio ours/theirs',
  ]
  fixed = FLAGS.fixed_batch
  sweeps = {
    'batch size': [(int(b), 10, 10, 32) for b in FLAGS.batch_sizes],
    'steps': [(fixed, int(s), 10, 32) for s in FLAGS.steps],
    'classes': [(fixed, 10, int(k), 64 if int(k) >= 200 else 32) for k in FLAGS.classes],
  }
  for title, points in sweeps.items():
    rows = [point(*p) for p in points]
    print(f'\nPGD vs {title}')
    print(common.format_table(header, rows), flush=True)


if __name__ == '__main__':
  app.run(main)

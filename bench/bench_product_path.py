"""Where one attack cell's time goes on the product path, ours and torch side by side.

BEARD times an attack as the attack plus the final forward pass of its adversarials
(PROTOCOL.md §5). This splits that time into its parts on both sides, on the first N
CIFAR-10 test images in one batch of N (`beard` protocol, BEARD's hyperparameters;
`--num_images` and `--repeats` are `bench_attacks.py`'s flags):

  * the bare attack (ours: the jitted attack alone; torch: the torchattacks call);
  * one forward pass to predictions (ours: jitted argmax; torch: under `no_grad`);
  * ours only: the runner's cell, `run_compiled` with the model's clean predictions
    given, as `launch.py` runs it (attack, final forward, top-2 gap, norms, transfers).

The runner's overhead is cell / (bare + forward) − 1; the product ratio is torch's
(bare + forward) over our cell. Medians of `--repeats` calls after one warm-up each.

  BEARD_DATA_DIR=../shared/data .venv/bin/python bench/bench_product_path.py \
    --attack=fgsm --num_images=256 --repeats=7
"""

from __future__ import annotations

import statistics
import time

import bench_attacks  # bench-local; of its flags --num_images and --repeats apply
import common  # bench-local: puts the repo root on sys.path
import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from attacks import get_attack
from beard_jax import protocols
from beard_jax.evaluate.runner import compile_attack, predict_clean, run_compiled

FLAGS = flags.FLAGS
flags.DEFINE_string('attack', 'fgsm', 'attack of the beard suite')


def _median_seconds(fn) -> float:
  fn()
  times = []
  for _ in range(FLAGS.repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main(argv):
  del argv
  torch = common.import_torch()
  models = common.load_models(common.CHECKPOINT)
  images = common.load_test_images(FLAGS.num_images)
  net = common.torch_convnet_module().torch_convnet(
    str(common.data_dir() / common.CHECKPOINT), pixels=False
  )
  x, y = jnp.asarray(images.nhwc), jnp.asarray(images.labels)
  attack = get_attack(FLAGS.attack, **protocols.BEARD.attack_hparams[FLAGS.attack])
  bare = jax.jit(lambda p, a, b: attack(models.apply_fn, p, a, b, jax.random.key(0)))
  forward = jax.jit(lambda p, a: jnp.argmax(models.apply_fn(p, a), -1))
  cell = compile_attack(
    lambda value: attack, models.apply_fn, models.params, x.shape[1:],
    batch_size=len(images.labels), targeted=False, num_examples=len(images.labels),
  )  # fmt: skip
  clean = predict_clean(cell, images.nhwc)
  theirs = bench_attacks.torch_attack(FLAGS.attack, net)
  x_torch = common.to_torch(images.nchw)
  y_torch = common.to_torch(images.labels.astype(np.int64))

  def torch_forward():
    with torch.no_grad():
      net(x_torch).argmax(1).numpy()

  ours = {
    'bare attack': _median_seconds(lambda: jax.block_until_ready(bare(models.params, x, y))),
    'forward': _median_seconds(lambda: jax.block_until_ready(forward(models.params, x))),
    'runner cell': _median_seconds(
      lambda: run_compiled(
        cell, images.nhwc, images.labels, key=jax.random.key(0), clean_predictions=clean
      )
    ),
  }
  torch_parts = {
    'bare attack': _median_seconds(lambda: theirs(x_torch, y_torch)),
    'forward': _median_seconds(torch_forward),
  }
  print(common.machine_line())
  print(f'{FLAGS.attack}, beard protocol, {len(images.labels)} images in one batch, medians')
  rows = [
    [part, ours[part], torch_parts.get(part, float('nan'))]
    for part in ('bare attack', 'forward', 'runner cell')
  ]
  print(common.format_table(['part', 'ours s', 'torch s'], rows))
  ours_sum = ours['bare attack'] + ours['forward']
  torch_sum = torch_parts['bare attack'] + torch_parts['forward']
  print(
    f'runner overhead over bare + forward: {ours["runner cell"] / ours_sum - 1:+.1%}; '
    f'ratios torch/ours: bare {torch_parts["bare attack"] / ours["bare attack"]:.2f}x, '
    f'forward {torch_parts["forward"] / ours["forward"]:.2f}x, '
    f'product path {torch_sum / ours["runner cell"]:.2f}x'
  )


if __name__ == '__main__':
  app.run(main)

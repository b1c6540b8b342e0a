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
(bare + forward) over our cell. Every part runs once to warm up, then all parts alternate
for `--repeats` rounds (`common.time_alternating`); medians are reported.

  BEARD_DATA_DIR=../shared/data .venv/bin/python bench/bench_product_path.py \
    --attack=fgsm --num_images=256 --repeats=7
"""

from __future__ import annotations

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

PARTS = ('bare attack', 'forward', 'runner cell')  # torch has no runner cell


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

  parts = {
    'ours bare attack': lambda: common.block(bare(models.params, x, y)),
    'ours forward': lambda: common.block(forward(models.params, x)),
    'ours runner cell': lambda: run_compiled(
      cell, images.nhwc, images.labels, key=jax.random.key(0), clean_predictions=clean
    ),
    'torch bare attack': lambda: theirs(x_torch, y_torch),
    'torch forward': torch_forward,
  }
  for part in parts.values():  # warm-up
    part()
  times = common.time_alternating(parts, FLAGS.repeats)
  ours = {name: common.median(times[f'ours {name}']) for name in PARTS}
  torch_parts = {name: common.median(times[f'torch {name}']) for name in PARTS[:2]}
  print(common.machine_line())
  print(f'{FLAGS.attack}, beard protocol, {len(images.labels)} images in one batch, medians')
  rows = [[part, ours[part], torch_parts.get(part, float('nan'))] for part in PARTS]
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

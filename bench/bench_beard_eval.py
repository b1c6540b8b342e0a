"""One model's whole BEARD evaluation: ours against BEARD's code path with torchattacks.

BEARD evaluates a model by running each attack of its suite over the test set,
targeted and untargeted (DeepFool untargeted only), every pass ending in a
forward pass of the adversarial images. Its model's parameters require
gradients (BEARD never freezes them), so each of torch's backward passes also
computes weight gradients. Ours is `run_attack`, as `launch.py` calls it, with
the `beard` protocol's hyperparameters. Both sides attack the first N test
images in batches of `--batch_size`, alternating per cell; the seconds are
extrapolated linearly to the 10,000-image test set (exact for DeepFool, which
works sample by sample, and close for the batched attacks when N is a multiple
of the batch).

  BEARD_DATA_DIR=../shared/data .venv/bin/python bench/bench_beard_eval.py \
    --num_images=256 --checkpoint=beard_model_pool/BACON_ConvNet_CIFAR10_50_None_0.6995.pth
"""

from __future__ import annotations

import time

import bench_attacks  # bench-local; of its flags only --num_images, --batch_size apply
import common  # bench-local: puts the repo root on sys.path
import jax
import numpy as np
from absl import app, flags

from attacks import get_attack
from beard_jax import protocols
from beard_jax.evaluate.runner import run_attack

FLAGS = flags.FLAGS
flags.DEFINE_string('checkpoint', common.CHECKPOINT, 'BEARD checkpoint under $BEARD_DATA_DIR')
flags.DEFINE_list('suite', ['fgsm', 'pgd', 'pgd_l2', 'cw', 'deepfool'], 'attacks of the suite')

FULL_TEST_SET = 10_000


def _ours(name, targeted, models, images, targets):
  """(seconds without compilation, robust accuracy %) of one cell of ours."""
  attack = get_attack(name, **protocols.BEARD.attack_hparams[name], targeted=targeted)
  run = run_attack(
    attack,
    models.apply_fn,
    models.params,
    images.nhwc,
    images.labels,
    key=jax.random.key(0),
    batch_size=FLAGS.batch_size,
    targets=targets if targeted else None,
  )
  return run.total_seconds, run.robust_accuracy


def _theirs(name, targeted, net, images, targets):
  """(seconds, robust accuracy %) of one cell of BEARD's loop: attack, then a forward pass."""
  torch = common.import_torch()
  atk = bench_attacks.torch_attack(name, net)
  if targeted:
    atk.set_mode_targeted_by_label(quiet=True)
  correct = 0
  start = time.perf_counter()
  for rows in common.batches(len(images.labels), FLAGS.batch_size):
    x = common.to_torch(images.nchw[rows])
    y = common.to_torch(images.labels[rows].astype(np.int64))
    adv = atk(x, common.to_torch(targets[rows].astype(np.int64)) if targeted else y)
    with torch.no_grad():
      correct += int((net(adv).argmax(1) == y).sum())  # int(): waits for the GPU
  return time.perf_counter() - start, 100.0 * correct / len(images.labels)


def main(argv):
  del argv
  models = common.load_models(FLAGS.checkpoint)
  net = (
    common.torch_convnet_module()
    .torch_convnet(str(common.data_dir() / FLAGS.checkpoint), pixels=False)
    .to(common.torch_device())
  )  # parameters left requiring gradients, as in BEARD
  images = common.load_test_images(FLAGS.num_images)
  targets = np.asarray(protocols.target_labels(protocols.BEARD, images.labels, 10), np.int32)
  print(common.machine_line())
  print(
    f'{FLAGS.checkpoint}, beard protocol, {len(images.labels)} images, batch '
    f'{FLAGS.batch_size}; seconds × {FULL_TEST_SET / len(images.labels):.3g} = full test set'
  )
  _ours('fgsm', False, models, images, targets)  # warm-up: one-off costs of both sides
  _theirs('fgsm', False, net, images, targets)
  scale = FULL_TEST_SET / len(images.labels)
  rows, total_ours, total_theirs = [], 0.0, 0.0
  for name in FLAGS.suite:
    for targeted in (False, True):
      if targeted and name in protocols.BEARD.untargeted_only:
        continue
      ours_s, ours_acc = _ours(name, targeted, models, images, targets)
      theirs_s, theirs_acc = _theirs(name, targeted, net, images, targets)
      total_ours, total_theirs = total_ours + ours_s, total_theirs + theirs_s
      mode = 'targeted' if targeted else 'untargeted'
      rows.append(
        [name, mode, ours_s, theirs_s, theirs_s / ours_s, ours_s * scale, theirs_s * scale,
         ours_acc, theirs_acc]
      )  # fmt: skip
  rows.append(
    ['all', 'both', total_ours, total_theirs, total_theirs / total_ours, total_ours * scale,
     total_theirs * scale, float('nan'), float('nan')]
  )  # fmt: skip
  header = [
    'attack',
    'mode',
    'ours s',
    'theirs s',
    'speed-up',
    'ours s (10k, extrapolated)',
    'theirs s (10k, extrapolated)',
    'ours rob. acc %',
    'theirs rob. acc %',
  ]
  print(common.format_table(header, rows))


if __name__ == '__main__':
  app.run(main)

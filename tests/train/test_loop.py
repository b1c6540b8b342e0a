"""Tests of beard_jax.train.loop: chunked training equals the single program, bit for bit.

Same tiny ConvNet, set and recipe as tests/train/test_trainer.py, so the single
programs (`make_train_fn`, cached per argument set) are compiled once per session.
"""

from __future__ import annotations

import logging as std_logging

import jax
import numpy as np
import pytest

from beard_jax.benchmark.progress import TrainingProgress
from beard_jax.data.specs import DatasetSpec
from beard_jax.models import ConvNet
from beard_jax.train import (
  TrainingReport,
  TrainRecipe,
  make_chunk_fn,
  make_train_fn,
  seed_keys,
  train_seeds,
)

SPEC = DatasetSpec('tiny16', 4, 16, 3, (0.5, 0.4, 0.3), (0.25, 0.2, 0.3))
MODEL = ConvNet(num_classes=4, width=8, depth=1)
# 24 examples, batch 10: batches of 10, 10 and a masked 4; 3 epochs, lr decay from epoch 3 on.
RECIPE = TrainRecipe(batch_size=10, epochs=2, augmentation='crop_flip')


def _tiny_set(num=24, seed=0):
  rng = np.random.default_rng(seed)
  labels = np.arange(num) % SPEC.num_classes
  images = rng.uniform(0.0, 1.0, size=(num, 16, 16, 3)) * 0.5
  images[..., 0] += 0.5 * (labels[:, None, None] % 2)
  images[..., 1] += 0.5 * (labels[:, None, None] // 2)
  return images.astype(np.float32), labels.astype(np.int32)


def _assert_bitwise_equal(a, b):
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


@pytest.mark.parametrize('seed_axis', ['vmap', 'map'])
def test_chunked_training_equals_the_single_program_bit_for_bit(seed_axis):
  images, labels = _tiny_set()
  single = make_train_fn(RECIPE, MODEL, SPEC, seed_axis=seed_axis)(
    seed_keys([0, 1]), images, labels
  )
  reports = []
  # chunk_seconds=0: one epoch per chunk; the default: one epoch, then the other two.
  one_epoch_chunks = train_seeds(
    [0, 1], images, labels, RECIPE, MODEL, SPEC, seed_axis=seed_axis, progress=reports.append,
    chunk_seconds=0.0,
  )  # fmt: skip
  sized_chunks = train_seeds([0, 1], images, labels, RECIPE, MODEL, SPEC, seed_axis=seed_axis)
  _assert_bitwise_equal(one_epoch_chunks, single)
  _assert_bitwise_equal(sized_chunks, single)
  chunk_fn = make_chunk_fn(RECIPE, MODEL, SPEC, None, 'normalized', seed_axis)  # as train_seeds
  assert chunk_fn._cache_size() == 1, 'chunks of 1 and 2 epochs must share one program'
  assert [r.epochs_done for r in reports] == [1, 2, 3]
  assert all(r.num_epochs == 3 and np.isfinite(r.mean_loss) and r.mean_loss > 0 for r in reports)
  assert reports[-1].train_seconds >= reports[0].train_seconds > 0


def test_nan_loss_stops_training_naming_the_seeds_and_epoch():
  images, labels = _tiny_set()
  diverging = RECIPE._replace(learning_rate=1e8)  # the loss is 1e31 in epoch 1, NaN in epoch 2
  reports = []
  with pytest.raises(FloatingPointError, match=r'seed 3 in epoch 2/3; seed 4 in epoch 2/3'):
    train_seeds([3, 4], images, labels, diverging, MODEL, SPEC, progress=reports.append)
  assert [r.epochs_done for r in reports] == [1], 'stops at the first chunk with a NaN loss'
  # A NaN pixel: XLA:CPU's fused ReLU (fast min/max) drops it from the loss, not from the
  # weight gradients; the final check of the parameters names the seeds.
  images[5] = np.nan
  with pytest.raises(FloatingPointError, match=r'NaN/inf.*seeds? 3'):
    train_seeds([3, 4], images, labels, RECIPE, MODEL, SPEC)
  with pytest.raises(ValueError, match=r'expected images \[N, 16, 16, 3\]'):
    train_seeds([0], images[:, :8], labels, RECIPE, MODEL, SPEC)


def test_training_progress_logs_first_every_interval_and_last(caplog):
  progress = TrainingProgress('training DC seeds 0-1', log_every_s=3600.0)
  with caplog.at_level(std_logging.INFO):
    for done in (10, 20, 30, 40):
      progress(TrainingReport(done, 40, 1.5, done * 0.5, 12.0))
  lines = [r.getMessage() for r in caplog.records if 'training DC' in r.getMessage()]
  assert lines == [
    'training DC seeds 0-1: epoch 10/40, loss 1.5000, 2.00 epochs/s, elapsed 17s, '
    'ETA 15s (compiled in 12s)',
    'training DC seeds 0-1: epoch 40/40, loss 1.5000, 2.00 epochs/s, elapsed 32s, ETA 0s',
  ]

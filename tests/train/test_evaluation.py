"""Tests of beard_jax.train.evaluation: per-seed correct counts in one padded pass."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from beard_jax.data.specs import DatasetSpec
from beard_jax.models import ConvNet
from beard_jax.models.convnet import init_params, make_apply_fn
from beard_jax.train import evaluate_seeds, make_evaluate_fn

SPEC = DatasetSpec('tiny8', 3, 8, 3, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
MODEL = ConvNet(num_classes=3, width=4, depth=1)


def test_counts_match_a_host_loop_with_a_padded_last_batch_and_compile_once():
  keys = jax.random.split(jax.random.key(0), 4)
  stacked = jax.vmap(lambda k: init_params(MODEL, SPEC, k))(keys)
  rng = np.random.default_rng(0)
  images = rng.normal(size=(23, 8, 8, 3)).astype(np.float32)
  labels = rng.integers(0, 3, size=23)
  apply_fn = make_apply_fn(MODEL, SPEC, 'normalized')

  expected = [
    int(
      np.sum(
        np.argmax(np.asarray(apply_fn(jax.tree.map(lambda p, s=s: p[s], stacked), images)), -1)
        == labels
      )
    )
    for s in range(4)
  ]
  evaluate = make_evaluate_fn(apply_fn, batch_size=5)  # 23 = 4 × 5 + 3: last batch padded
  counts = np.asarray(evaluate(stacked, jnp.asarray(images), jnp.asarray(labels)))
  assert counts.tolist() == expected and counts.dtype == np.int32
  assert len(set(expected)) > 1, 'random seeds should disagree somewhere'
  evaluate(stacked, jnp.asarray(images) + 1.0, jnp.asarray(labels))
  assert evaluate._cache_size() == 1
  np.testing.assert_array_equal(evaluate_seeds(apply_fn, stacked, images, labels, 23), expected)
  np.testing.assert_array_equal(evaluate_seeds(apply_fn, stacked, images, labels, 64), expected)

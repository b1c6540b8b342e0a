"""Coreset baselines (beard_jax.distill.coreset) against brute-force numpy selections."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from beard_jax.distill import coreset, real_data
from tests.distill.toy import TOY_SPEC, toy_real_set


def _features_and_counts(seed=0):
  """Random [3, 9, 5] embeddings; class 1 has only 6 real rows (the rest padding)."""
  rng = np.random.default_rng(seed)
  features = rng.normal(size=(3, 9, 5)).astype(np.float32)
  counts = np.array([9, 6, 9], np.int32)
  features[1, 6:] = 1e3  # Padding must never be picked, however attractive.
  return features, counts


def _numpy_herding(features, count, ipc):
  rows = features[:count].astype(np.float64)
  mean, chosen, total = rows.mean(0), [], np.zeros(rows.shape[1])
  for t in range(ipc):
    distance = np.linalg.norm(mean - (total + rows) / (t + 1), axis=1)
    distance[chosen] = np.inf
    chosen.append(int(np.argmin(distance)))
    total += rows[chosen[-1]]
  return chosen


def _numpy_kcenter(features, count, first, ipc):
  rows = features[:count].astype(np.float64)
  chosen = [first]
  nearest = np.linalg.norm(rows - rows[first], axis=1)
  for _ in range(ipc - 1):
    chosen.append(int(np.argmax(nearest)))
    nearest = np.minimum(nearest, np.linalg.norm(rows - rows[chosen[-1]], axis=1))
  return chosen


def test_herding_matches_brute_force():
  features, counts = _features_and_counts()
  selection = np.asarray(coreset.select_herding(jnp.asarray(features), jnp.asarray(counts), 4))
  for c in range(3):
    assert selection[c].tolist() == _numpy_herding(features[c], counts[c], 4)
  # Herding's mean is closer to the class mean than random picks' on average.
  rng = np.random.default_rng(1)
  class_mean = features[0].mean(0)
  herded = np.linalg.norm(features[0][selection[0]].mean(0) - class_mean)
  random = np.mean(
    [np.linalg.norm(features[0][rng.permutation(9)[:4]].mean(0) - class_mean) for _ in range(50)]
  )
  assert herded < 0.5 * random


def test_kcenter_matches_brute_force_from_the_same_first_center():
  features, counts = _features_and_counts(seed=2)
  key = jax.random.key(7)
  selection = np.asarray(coreset.select_kcenter(key, jnp.asarray(features), jnp.asarray(counts), 4))
  for c, class_key in enumerate(jax.random.split(key, 3)):
    first = int(jax.random.randint(class_key, (), 0, counts[c]))
    assert selection[c].tolist() == _numpy_kcenter(features[c], counts[c], first, 4)
    assert selection[c].max() < counts[c]


def test_random_selection_is_class_balanced_distinct_and_keyed():
  images, labels = toy_real_set(per_class=5)
  data = real_data.index_by_class(images, labels, 3)
  first = np.asarray(coreset.select_random(jax.random.key(0), data, 3))
  assert first.shape == (3, 3) and all(len(set(row)) == 3 for row in first.tolist())
  assert first.max() < 5
  np.testing.assert_array_equal(first, coreset.select_random(jax.random.key(0), data, 3))
  assert not np.array_equal(first, coreset.select_random(jax.random.key(1), data, 3))
  picked = np.asarray(coreset.gather_selection(data, TOY_SPEC, jnp.asarray(first)))
  expected = real_data.to_normalized(TOY_SPEC, images[labels == 2][first[2]])
  np.testing.assert_allclose(picked[6:9], expected, atol=1e-6)  # Class-major, selection order.
  with pytest.raises(ValueError, match='IPC 6 needs'):
    coreset.select_random(jax.random.key(0), data, 6)

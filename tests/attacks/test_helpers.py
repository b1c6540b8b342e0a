"""Registry, target rules, losses and projections: hand-computed values and error messages."""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import attacks
from attacks import losses, projections, targets
from attacks.registry import ATTACKS

OURS = ('fgsm', 'pgd', 'pgd_l2', 'cw', 'deepfool')


def test_registry_names_and_factories():
  assert set(OURS) <= set(attacks.ATTACK_NAMES)
  assert list(attacks.ATTACK_NAMES) == sorted(ATTACKS)
  for name in OURS:
    attack = attacks.get_attack(name)
    assert list(inspect.signature(attack).parameters) == ['apply_fn', 'params', 'x', 'y', 'key']


def test_unknown_attack_names_the_choices():
  with pytest.raises(ValueError, match=r"unknown attack 'pgd_linf'; choose from \[") as info:
    attacks.get_attack('pgd_linf')
  for name in OURS:
    assert repr(name) in str(info.value)


def test_unknown_hparam_is_rejected_with_valid_ones():
  with pytest.raises(ValueError, match=r"unknown hparams \['alpha'\] for attack 'pgd'") as info:
    attacks.get_attack('pgd', eps=0.1, alpha=0.01)
  assert "'step_size'" in str(info.value)


def test_unknown_loss_and_target_rule():
  with pytest.raises(ValueError, match='unknown loss'):
    attacks.get_attack('pgd', loss='hinge')
  with pytest.raises(ValueError, match='unknown target rule'):
    targets.get_target_fn('second_most_likely')


def test_target_rules():
  y = jnp.array([0, 3, 9, 9], jnp.int32)
  np.testing.assert_array_equal(targets.next_class(y, 10), [1, 4, 0, 0])
  # BEARD's rule with K = 10 on a 100-class label set stays below 10.
  np.testing.assert_array_equal(targets.next_class(jnp.array([55]), 10), [6])
  y_many = jnp.tile(jnp.arange(5, dtype=jnp.int32), 400)
  drawn = np.asarray(targets.random_other(jax.random.key(1), y_many, 5))
  assert np.all(drawn != np.asarray(y_many))
  for label in range(5):  # every other class appears for every label
    assert set(drawn[np.asarray(y_many) == label]) == set(range(5)) - {label}
  logits = jnp.array([[0.0, -2.0, 1.0], [3.0, 2.0, -1.0]])
  np.testing.assert_array_equal(targets.least_likely(logits), [1, 2])
  fn = targets.get_target_fn('next_class', num_classes=10)
  np.testing.assert_array_equal(fn(None, y, jnp.zeros((4, 100))), [1, 4, 0, 0])
  fn = targets.get_target_fn('next_class')
  np.testing.assert_array_equal(fn(None, y, jnp.zeros((4, 100))), [1, 4, 10, 10])


def test_losses_hand_computed():
  logits = jnp.array([[-1.0, -3.0, -2.0], [2.0, 0.5, 1.0]])
  y = jnp.array([1, 0])
  expected_ce = -np.log(np.exp([-3.0, 2.0]) / np.exp(np.asarray(logits)).sum(1))
  np.testing.assert_allclose(losses.cross_entropy(logits, y), expected_ce, rtol=1e-6)
  # Correct margin: max other - true.
  np.testing.assert_allclose(losses.margin(logits, y), [-1.0 - -3.0, 1.0 - 2.0])
  # torchattacks' f(): zeroed slots join both maxima, so other = max(0, ...) and real = max(0, z_y).
  np.testing.assert_allclose(losses.torchattacks_cw_margin(logits, y), [0.0 - 0.0, 1.0 - 2.0])
  # DLR: -(z_y - max_other) / (z1 - z3).
  np.testing.assert_allclose(losses.dlr(logits, y), [-(-3.0 + 1.0) / (-1.0 + 3.0), -1.0 / 1.5])
  four = jnp.array([[4.0, 1.0, 2.0, 0.0]])
  np.testing.assert_allclose(
    losses.dlr_targeted(four, jnp.array([0]), jnp.array([2])), [-(4.0 - 2.0) / (4.0 - 0.5)]
  )


def test_projections():
  key_a, key_b = jax.random.split(jax.random.key(0))
  x = jax.random.uniform(key_a, (6, 4, 4, 3))
  far = x + 3.0 * jax.random.normal(key_b, x.shape)
  inside = projections.project_l2(far, x, 0.5)
  np.testing.assert_allclose(projections.l2_norm(inside - x), 0.5, rtol=1e-5)
  near = x + 1e-3 * (far - x) / projections.l2_norm(far - x)[:, None, None, None]
  np.testing.assert_allclose(projections.project_l2(near, x, 0.5), near, rtol=0, atol=0)
  np.testing.assert_array_equal(projections.project_l2(x, x, 0.0), x)  # no 0/0
  box = projections.project_linf(far, x, 0.1)
  assert float(projections.linf_norm(box - x).max()) <= 0.1 + 1e-6
  direction = projections.normalize_l2(far - x)
  np.testing.assert_allclose(projections.l2_norm(direction), 1.0, rtol=1e-6)
  noise = projections.random_l2(jax.random.key(2), (500, 8), 2.0)
  norms = np.asarray(projections.l2_norm(noise))
  assert norms.max() <= 2.0 + 1e-5 and 0.8 < norms.mean() < 1.2  # radius U(0, 1)·eps

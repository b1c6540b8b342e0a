"""Tests of beard_jax.train.recipes: the published schedule and PyTorch-equivalent optimizers."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from beard_jax.train import recipes
from beard_jax.train.recipes import ADAM_RECIPE, SGD_RECIPE, TrainRecipe


def test_default_recipe_is_the_published_code():
  assert SGD_RECIPE.optimizer == 'sgd'
  assert (SGD_RECIPE.learning_rate, SGD_RECIPE.momentum, SGD_RECIPE.weight_decay) == (
    0.01,
    0.9,
    5e-4,
  )
  assert (SGD_RECIPE.batch_size, SGD_RECIPE.epochs) == (256, 1000)
  assert SGD_RECIPE.augmentation == 'color_crop_cutout_flip_scale_rotate'
  assert (ADAM_RECIPE.optimizer, ADAM_RECIPE.learning_rate, ADAM_RECIPE.batch_size) == (
    'adam',
    1e-4,
    128,
  )
  assert recipes.get_recipe('sgd') is SGD_RECIPE
  with pytest.raises(ValueError, match='choose from'):
    recipes.get_recipe('lamb')
  with pytest.raises(AttributeError):
    SGD_RECIPE.learning_rate = 1.0  # immutable
  hash(SGD_RECIPE)  # usable as a static jit argument


def test_published_loop_schedule_for_1000_epochs():
  # for ep in range(1001): train; if ep == 1000 // 2 + 1: lr *= 0.1 (new optimizer).
  lrs = recipes.epoch_learning_rates(SGD_RECIPE)
  assert recipes.num_epochs(SGD_RECIPE) == 1001 and lrs.shape == (1001,)
  assert recipes.decay_epoch(SGD_RECIPE) == 502
  np.testing.assert_allclose(lrs[:502], 0.01)
  np.testing.assert_allclose(lrs[502:], 0.001)


def test_schedule_variants():
  clean = SGD_RECIPE._replace(epochs=10, published_loop=False)
  assert recipes.num_epochs(clean) == 10 and recipes.decay_epoch(clean) == 5
  np.testing.assert_allclose(recipes.epoch_learning_rates(clean), [0.01] * 5 + [0.001] * 5)
  # Simulate the reference loop by hand for a small odd Epoch.
  epoch_count, lr, seen = 7, 0.01, []
  for ep in range(epoch_count + 1):
    seen.append(lr)
    if ep == epoch_count // 2 + 1:
      lr *= 0.1
  np.testing.assert_allclose(
    recipes.epoch_learning_rates(SGD_RECIPE._replace(epochs=epoch_count)), seen
  )
  flat = recipes.epoch_learning_rates(ADAM_RECIPE._replace(epochs=4))
  np.testing.assert_allclose(flat, [1e-4] * 5)


def test_sgd_matches_pytorch_update_rule_by_hand():
  # torch.optim.SGD(momentum=m, weight_decay=wd): g += wd·p; buf = m·buf + g (buf = g at
  # step 1); p -= lr·buf.
  recipe = TrainRecipe(learning_rate=0.1, momentum=0.9, weight_decay=0.01)
  optimizer = recipes.make_optimizer(recipe)
  params = {'w': jnp.array([1.0, -2.0])}
  state = optimizer.init(params)
  grads = [jnp.array([0.5, 0.25]), jnp.array([-1.0, 2.0])]
  p, buf = np.array([1.0, -2.0]), np.zeros(2)
  for g in grads:
    updates, state = optimizer.update({'w': g}, state, params)
    params = optax.apply_updates(params, updates)
    d = np.asarray(g) + 0.01 * p
    buf = 0.9 * buf + d
    p = p - 0.1 * buf
    np.testing.assert_allclose(np.asarray(params['w']), p, rtol=1e-6)
  assert float(state.hyperparams['learning_rate']) == pytest.approx(0.1)


def test_adam_matches_pytorch_update_rule_by_hand():
  optimizer = recipes.make_optimizer(ADAM_RECIPE._replace(learning_rate=0.01))
  params = {'w': jnp.array([0.3])}
  state = optimizer.init(params)
  p, m, v = 0.3, 0.0, 0.0
  for t, g in enumerate([0.5, -0.2, 0.1], start=1):
    updates, state = optimizer.update({'w': jnp.array([g])}, state, params)
    params = optax.apply_updates(params, updates)
    m = 0.9 * m + 0.1 * g
    v = 0.999 * v + 0.001 * g * g
    p -= 0.01 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    np.testing.assert_allclose(float(params['w'][0]), p, rtol=1e-5)


def test_unknown_optimizer_is_rejected():
  with pytest.raises(ValueError, match='choose from'):
    recipes.make_optimizer(TrainRecipe(optimizer='rmsprop'))

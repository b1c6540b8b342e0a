"""BACON: its matching term against the official formula, its settings, IDM's loop with it."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from beard_jax.distill import bacon, idm
from tests.distill.toy import TOY_SPEC


def _official(real: np.ndarray, syn: np.ndarray) -> float:
  """One class, as `BACON_cifar10.py` computes it (float64): −Σ log pdf + 0.8 · ½ Σ |Δ|."""
  mu_r, mu_s = real.mean(0), syn.mean(0)
  sigma = np.exp(real.std(0, ddof=1))  # torch.std: unbiased.
  pdf = 1 / (math.sqrt(2 * math.pi) * sigma) * np.exp(-0.5 * ((mu_s - mu_r) / sigma) ** 2)
  return float(-np.sum(np.log(pdf)) + 0.8 * 0.5 * np.sum(np.abs(mu_s - mu_r)))


def test_the_matching_term_is_the_official_formula_and_ignores_padding():
  rng = np.random.default_rng(0)
  real = rng.normal(1.0, 2.0, size=(3, 6, 5))  # 3 classes, 6 real rows, 5 features.
  syn = rng.normal(size=(3, 2, 5))
  valid = np.ones((3, 6), bool)
  valid[1, 4:] = False  # Class 1 has 4 real images; rows 4-5 are padding.
  real[1, 4:] = 1e3
  ours = bacon.bayesian_distance(
    jnp.asarray(real.reshape(18, 5), jnp.float32),
    jnp.asarray(valid),
    jnp.asarray(syn.reshape(6, 5), jnp.float32),
  )
  expected = [_official(real[c][valid[c]], syn[c]) for c in range(3)]
  np.testing.assert_allclose(ours, expected, rtol=1e-5)


def test_the_gradient_is_the_weighted_squared_and_absolute_pull():
  """d/dμ_s of ½ Δ² e^{−2s} + 0.4 |Δ|, spread over the m synthetic rows; nothing reaches the
  real side."""
  rng = np.random.default_rng(1)
  real = jnp.asarray(rng.normal(size=(8, 4)), jnp.float32)
  syn = jnp.asarray(rng.normal(size=(2, 4)), jnp.float32)
  valid = jnp.ones((1, 8), bool)
  grad_real, grad_syn = jax.grad(
    lambda r, s: jnp.sum(bacon.bayesian_distance(r, valid, s)), argnums=(0, 1)
  )(real, syn)
  delta = syn.mean(0) - real.mean(0)
  pull = delta * jnp.exp(-2 * jnp.std(real, axis=0, ddof=1)) + 0.4 * jnp.sign(delta)
  np.testing.assert_allclose(grad_syn, jnp.broadcast_to(pull / 2, (2, 4)), rtol=1e-5)
  assert not np.any(grad_real)


def test_a_far_synthetic_mean_stays_finite_where_the_official_log_pdf_is_not():
  real = jnp.zeros((4, 1), jnp.float32).at[0].set(0.1)
  far = jnp.full((1, 1), 40.0, jnp.float32)
  loss = bacon.bayesian_distance(real, jnp.ones((1, 4), bool), far)
  assert np.isfinite(loss).all() and float(loss[0]) > 700


def test_commands_are_idms_but_for_queue_training_and_the_tiny_start():
  """Code/command.txt differs from IDM's in two rows; BACON_tiny.py starts 4-in-1."""
  for dataset in ('cifar10', 'cifar100'):
    for ipc in (1, 10, 50):
      ours, theirs = bacon.official_config(dataset, ipc), idm.official_config(dataset, ipc)
      if (dataset, ipc) == ('cifar100', 50):
        assert (ours.model_train_steps, theirs.model_train_steps) == (50, 10)
        ours = ours._replace(model_train_steps=theirs.model_train_steps)
      assert ours == theirs
  assert bacon.official_config('cifar10', 1).batch_real == 5000
  assert bacon.official_config('tinyimagenet', 10).model_train_steps == 50
  assert idm.official_config('tinyimagenet', 10).model_train_steps == 10
  for ipc in (1, 10, 50):
    assert bacon.official_config('tinyimagenet', ipc).init == 'real_4in1'
    assert idm.official_config('tinyimagenet', ipc).init == 'real'


def test_one_bacon_iteration_moves_the_images_differently_from_idm(toy_data):
  config = idm.IDMConfig(
    batch_real=8, net_width=8, net_depth=1, net_num=4, trained_bs=8, model_train_steps=1,
    dsa_strategy='crop_flip',  # two ops, not six: the same loop, a fraction of the compile
  )  # fmt: skip
  state = idm.init_state(jax.random.key(0), toy_data, TOY_SPEC, 1, config)
  step = jax.jit(idm.step, static_argnames=('spec', 'config', 'matching'))
  ours, loss = step(state, toy_data, spec=TOY_SPEC, config=config, matching=bacon.bayesian_distance)
  theirs, _ = step(state, toy_data, spec=TOY_SPEC, config=config)
  assert np.isfinite(float(loss)) and int(ours.iteration) == 1
  moved = np.abs(np.asarray(ours.images - state.images)).max()
  assert moved > 0 and not np.allclose(ours.images, theirs.images)

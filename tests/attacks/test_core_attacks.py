"""Properties of FGSM, PGD (L∞, L2), C&W and DeepFool that can fail.

A random ConvNet(10, width=16) serves the geometric properties (box, ball,
ε = 0, tracing, vmap); BEARD's DSA checkpoint on real CIFAR-10 test images
serves the ones about strength (PGD ≥ FGSM, targeted hits, fooling rates).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import attacks
from attacks import targets
from attacks.projections import l2_norm, linf_norm
from beard_jax.data.specs import get_dataset_spec
from beard_jax.models import ConvNet, init_params, make_apply_fn

# Short runs: the properties do not need the full budgets.
FAST = {
  'fgsm': dict(eps=8 / 255),
  'pgd': dict(eps=8 / 255, step_size=2 / 255, steps=5),
  'pgd_l2': dict(eps=0.5, step_size=0.1, steps=5),
  'cw': dict(steps=10, lr=0.05),
  'deepfool': dict(steps=5),
}
NAMES = tuple(FAST)


def _run(name, apply_fn, params, x, y, key=None, **overrides):
  attack = attacks.get_attack(name, **{**FAST[name], **overrides})
  key = jax.random.key(0) if key is None else key
  return jax.jit(attack, static_argnums=0)(apply_fn, params, x, y, key)


def _predict(apply_fn, params, x):
  return np.asarray(jnp.argmax(apply_fn(params, x), axis=-1))


@pytest.mark.parametrize('targeted', [False, True])
@pytest.mark.parametrize('name', NAMES)
def test_box_and_ball(name, targeted, small_model, cifar_images):
  apply_fn, params = small_model
  x, y = cifar_images[0][:16], cifar_images[1][:16]
  if targeted:
    y = targets.next_class(y, 10)
  x_adv = np.asarray(_run(name, apply_fn, params, x, y, targeted=targeted))
  chex.assert_shape(x_adv, x.shape)
  chex.assert_type(x_adv, np.float32)
  chex.assert_tree_all_finite(x_adv)
  assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
  if name in ('fgsm', 'pgd'):
    assert float(linf_norm(x_adv - x).max()) <= FAST[name]['eps'] + 1e-6
  if name == 'pgd_l2':
    assert float(l2_norm(x_adv - x).max()) <= FAST[name]['eps'] * (1 + 1e-5)
  assert np.any(x_adv != np.asarray(x))


@pytest.mark.parametrize('name', ['fgsm', 'pgd', 'pgd_l2'])
def test_eps_zero_returns_input(name, small_model, cifar_images):
  apply_fn, params = small_model
  x, y = cifar_images[0][:8], cifar_images[1][:8]
  overrides = {'eps': 0.0} if name == 'fgsm' else {'eps': 0.0, 'random_start': True}
  x_adv = _run(name, apply_fn, params, x, y, **overrides)
  np.testing.assert_array_equal(x_adv, x)


def test_beard_protocol_box_on_normalised_input(small_model, cifar_images):
  """Normalised tensors (outside [0, 1]) are still clamped into the box, as torchattacks does."""
  spec = get_dataset_spec('cifar10')
  model = ConvNet(10, width=16)
  apply_fn = make_apply_fn(model, spec, 'normalized')
  params = small_model[1]
  x = (cifar_images[0][:8] - jnp.asarray(spec.mean)) / jnp.asarray(spec.std)
  assert float(x.min()) < -1.0
  x_adv = np.asarray(_run('pgd', apply_fn, params, x, cifar_images[1][:8], random_start=False))
  assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


def test_pgd_at_least_as_strong_as_fgsm(beard_model, cifar_images):
  apply_fn, params = beard_model
  x, y = cifar_images[0][:24], cifar_images[1][:24]
  eps = 2 / 255
  x_fgsm = _run('fgsm', apply_fn, params, x, y, eps=eps)
  x_pgd = _run(
    'pgd', apply_fn, params, x, y, eps=eps, step_size=eps / 4, steps=10, random_start=False
  )
  right_fgsm = _predict(apply_fn, params, x_fgsm) == np.asarray(y)
  right_pgd = _predict(apply_fn, params, x_pgd) == np.asarray(y)
  right_clean = _predict(apply_fn, params, x) == np.asarray(y)
  assert right_pgd.sum() <= right_fgsm.sum() < right_clean.sum()
  ce = attacks.losses.cross_entropy
  assert float(ce(apply_fn(params, x_pgd), y).mean()) >= float(
    ce(apply_fn(params, x_fgsm), y).mean()
  )


@pytest.mark.parametrize('name', NAMES)
def test_targeted_hits_more_than_chance(name, beard_model, cifar_images):
  apply_fn, params = beard_model
  x, y = cifar_images[0][:16], cifar_images[1][:16]
  target = targets.next_class(y, 10)
  overrides = {'targeted': True}
  if name == 'cw':
    overrides.update(steps=30, c=10.0)
  if name == 'deepfool':
    overrides.update(steps=10)
  x_adv = _run(name, apply_fn, params, x, target, **overrides)
  hits = np.mean(_predict(apply_fn, params, x_adv) == np.asarray(target))
  clean_hits = np.mean(_predict(apply_fn, params, x) == np.asarray(target))
  assert hits > max(2 * 0.1, clean_hits + 0.1), (hits, clean_hits)


def test_cw_and_deepfool_untargeted(beard_model, cifar_images):
  apply_fn, params = beard_model
  x, y = cifar_images[0][:16], cifar_images[1][:16]
  y_np = np.asarray(y)
  clean_right = _predict(apply_fn, params, x) == y_np
  assert 0 < clean_right.sum() < len(y_np)  # both kinds of samples present

  x_df = np.asarray(_run('deepfool', apply_fn, params, x, y, steps=50))
  fooled = _predict(apply_fn, params, x_df) != y_np
  assert np.all(fooled[clean_right])
  # Already misclassified samples come back unchanged.
  np.testing.assert_array_equal(x_df[~clean_right], np.asarray(x)[~clean_right])

  x_cw = np.asarray(_run('cw', apply_fn, params, x, y, steps=30, c=10.0))
  fooled = _predict(apply_fn, params, x_cw) != y_np
  assert fooled[clean_right].mean() >= 0.5
  # A failed sample keeps its input exactly.
  np.testing.assert_array_equal(x_cw[~fooled], np.asarray(x)[~fooled])


def _linear_model(num_classes=4, side=2, seed=0):
  kw, kb = jax.random.split(jax.random.key(seed))
  w = jax.random.normal(kw, (side * side * 3, num_classes))
  b = jax.random.normal(kb, (num_classes,))
  return (lambda params, x: x.reshape(x.shape[0], -1) @ params[0] + params[1]), (w, b)


@pytest.mark.parametrize('candidates', [None, 2])
def test_deepfool_one_step_on_a_linear_model(candidates):
  """On an affine model the first step lands (1 + overshoot) × past the nearest boundary."""
  apply_fn, (w, b) = _linear_model()
  x = jax.random.uniform(jax.random.key(3), (32, 2, 2, 3))
  y = jnp.argmax(apply_fn((w, b), x), axis=-1).astype(jnp.int32)
  attack = attacks.get_attack(
    'deepfool', steps=1, overshoot=0.02, candidates=candidates, clip_min=-1e3, clip_max=1e3
  )
  x_adv = np.asarray(jax.jit(attack, static_argnums=0)(apply_fn, (w, b), x, y, None))

  wn, bn, xn, yn = (
    np.asarray(w, np.float64),
    np.asarray(b, np.float64),
    np.asarray(x),
    np.asarray(y),
  )
  for i in range(len(xn)):
    f = xn[i].reshape(-1) @ wn + bn
    classes = np.argsort(-f)[:candidates] if candidates else np.arange(4)
    best, best_dist = None, np.inf
    for k in classes:
      if k == yn[i]:
        continue
      dw = wn[:, k] - wn[:, yn[i]]
      dist = abs(f[k] - f[yn[i]]) / np.linalg.norm(dw)
      if dist < best_dist:
        best, best_dist = k, dist
    dw = wn[:, best] - wn[:, yn[i]]
    expected = xn[i].reshape(-1) + 1.02 * abs(f[best] - f[yn[i]]) * dw / np.dot(dw, dw)
    np.testing.assert_allclose(x_adv[i].reshape(-1), expected, rtol=1e-4, atol=1e-5)
  assert np.all(_predict(apply_fn, (w, b), jnp.asarray(x_adv)) != yn)


@pytest.mark.parametrize('name', NAMES)
def test_compiles_once_per_shape(name, small_model, cifar_images):
  apply_fn, params = small_model
  attack = attacks.get_attack(name, **FAST[name])
  traces = []

  def counted(params, x, y, key):
    traces.append(x.shape)
    return attack(apply_fn, params, x, y, key)

  jitted = jax.jit(counted)
  x, y = cifar_images
  jitted(params, x[:4], y[:4], jax.random.key(0)).block_until_ready()
  jitted(params, x[4:8], y[4:8], jax.random.key(1)).block_until_ready()
  assert len(traces) == 1
  jitted(params, x[:6], y[:6], jax.random.key(0)).block_until_ready()
  assert len(traces) == 2


@pytest.mark.parametrize('name', NAMES)
def test_vmap_over_seeds_equals_loop(name, cifar_images):
  spec = get_dataset_spec('cifar10')
  model = ConvNet(10, width=16)
  apply_fn = make_apply_fn(model, spec, 'pixels')
  seeds = [init_params(model, spec, jax.random.key(s)) for s in range(3)]
  stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *seeds)
  x, y = cifar_images[0][:6], cifar_images[1][:6]
  key = jax.random.key(7)
  attack = attacks.get_attack(name, **FAST[name])
  if name in ('pgd', 'pgd_l2'):
    attack = attacks.get_attack(name, **FAST[name], random_start=True)
  jitted = jax.jit(attack, static_argnums=0)
  vmapped = jax.jit(jax.vmap(attack, in_axes=(None, 0, None, None, None)), static_argnums=0)
  together = np.asarray(vmapped(apply_fn, stacked, x, y, key))
  for s, params in enumerate(seeds):
    alone = np.asarray(jitted(apply_fn, params, x, y, key))
    # Batched convolutions may round differently; a sign() step can then flip a rare pixel.
    close = np.isclose(together[s], alone, rtol=1e-4, atol=1e-5)
    assert close.mean() >= 0.999, (name, s, close.mean())


# Targeted: the same queue (test_work_queue checks slot independence in both modes, fast).
@pytest.mark.parametrize('targeted', [False, pytest.param(True, marks=pytest.mark.slow)])
def test_deepfool_work_queue_equals_lock_step(beard_model, cifar_images, targeted):
  """`slots` only schedules the samples: the queue gives each sample its lock-step image."""
  apply_fn, params = beard_model
  x, y = cifar_images[0][:8], cifar_images[1][:8]
  labels = targets.next_class(y, 10) if targeted else y
  attack = attacks.get_attack('deepfool', **{**FAST['deepfool'], 'steps': 10}, targeted=targeted,
                              slots=1)  # fmt: skip
  single = jax.jit(lambda p, xx, yy: attack(apply_fn, p, xx, yy, jax.random.key(0)))
  one_by_one = np.concatenate(
    [single(params, x[i : i + 1], labels[i : i + 1]) for i in range(len(y))]
  )
  # One slot: every convolution sees a batch of one, as above, so the images are equal.
  queued = _run('deepfool', apply_fn, params, x, labels, steps=10, targeted=targeted, slots=1)
  np.testing.assert_array_equal(np.asarray(queued), one_by_one)
  changed = np.any(one_by_one != np.asarray(x), axis=(1, 2, 3))
  assert changed.any()
  if not targeted:  # misclassified samples come back at once, so slots turn over unevenly
    assert not changed.all()
  # Three slots against the whole batch in lock-step: equal up to batch-size float rounding.
  lock_step = _run('deepfool', apply_fn, params, x, labels, steps=10, targeted=targeted, slots=8)
  queued = _run('deepfool', apply_fn, params, x, labels, steps=10, targeted=targeted, slots=3)
  np.testing.assert_array_equal(
    _predict(apply_fn, params, queued), _predict(apply_fn, params, lock_step)
  )
  np.testing.assert_allclose(np.asarray(queued), np.asarray(lock_step), atol=1e-3)

"""Tests of beard_jax.train.trainer on a tiny ConvNet and synthetic sets.

Compiling a training run takes seconds on this CPU, so each test compiles as
few programs as it can; the models are tiny (width 8, depth 1, 16×16 images).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from beard_jax.data.specs import DatasetSpec
from beard_jax.models import ConvNet
from beard_jax.models.convnet import init_params, normalize
from beard_jax.train import TrainRecipe, make_train_fn, seed_keys, train_one

SPEC = DatasetSpec('tiny16', 4, 16, 3, (0.5, 0.4, 0.3), (0.25, 0.2, 0.3))
MODEL = ConvNet(num_classes=4, width=8, depth=1)


def _tiny_set(num=24, seed=0):
  rng = np.random.default_rng(seed)
  labels = np.arange(num) % SPEC.num_classes
  # Class-dependent colour shifts make the set learnable.
  images = rng.uniform(0.0, 1.0, size=(num, 16, 16, 3)) * 0.5
  images[..., 0] += 0.5 * (labels[:, None, None] % 2)
  images[..., 1] += 0.5 * (labels[:, None, None] // 2)
  return images.astype(np.float32), labels.astype(np.int32)


def _max_abs_diff(a, b):
  return max(jax.tree.leaves(jax.tree.map(lambda u, v: float(jnp.max(jnp.abs(u - v))), a, b)))


def test_vmapped_seeds_equal_single_runs_and_compile_once():
  images, labels = _tiny_set()
  # 24 examples, batch 10: batches of 10, 10 and a masked last one of 4. Two DSA ops
  # keep the per-seed `lax.switch` (a select under vmap) at a fraction of the compile time.
  recipe = TrainRecipe(batch_size=10, epochs=2, augmentation='crop_flip')
  train_many = make_train_fn(recipe, MODEL, SPEC)
  keys = seed_keys([0, 1])
  stacked = train_many(keys, images, labels)
  again = train_many(seed_keys([3, 4]), images + 0.01, labels)
  assert train_many._cache_size() == 1, 'N seeds must be one compiled program, reused'
  assert jax.tree.leaves(stacked)[0].shape[0] == 2
  # Seeds mapped one after the other in the same program (XLA:CPU's faster form).
  mapped = make_train_fn(recipe, MODEL, SPEC, seed_axis='map')(keys, images, labels)
  assert _max_abs_diff(mapped, stacked) < 1e-4

  train_single = jax.jit(functools.partial(train_one, recipe=recipe, model=MODEL, spec=SPEC))
  for seed in range(2):
    single = train_single(keys[seed], images, labels)
    seed_params = jax.tree.map(lambda leaf, s=seed: leaf[s], stacked)
    assert _max_abs_diff(seed_params, single) < 1e-4
  # Seeds differ, and training moved the parameters away from their init.
  assert _max_abs_diff(jax.tree.map(lambda p: p[0], stacked), jax.tree.map(lambda p: p[1], stacked))
  assert _max_abs_diff(jax.tree.map(lambda p: p[0], again), jax.tree.map(lambda p: p[0], stacked))
  init = init_params(MODEL, SPEC, jax.random.split(keys[0], 4)[0])
  assert _max_abs_diff(jax.tree.map(lambda p: p[0], stacked), init) > 1e-3
  with pytest.raises(ValueError, match=r'expected images \[N, 16, 16, 3\]'):
    train_many(keys, images[:, :8], labels)


def _reference_run(key, images, labels, recipe, reset_momentum=True, decay=True):
  """The published loop written out by hand: PyTorch SGD, a new optimizer at the decay.

  Follows train_one's documented key contract; batches are taken at their real size
  (the last one smaller), so it also checks the trainer's padding and masking.
  """
  key_init, key_shuffle, _, _ = jax.random.split(key, 4)
  params = init_params(MODEL, SPEC, key_init)
  x_all = normalize(SPEC, jnp.asarray(images))
  num = x_all.shape[0]

  @jax.jit
  def grads_of(params, x, y):
    def loss(p):
      logits = MODEL.apply(p, x)
      return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))

    return jax.grad(loss)(params)

  lr = recipe.learning_rate
  momentum = jax.tree.map(jnp.zeros_like, params)
  for ep in range(recipe.epochs + 1):
    order = np.asarray(jax.random.permutation(jax.random.fold_in(key_shuffle, ep), num))
    for start in range(0, num, recipe.batch_size):
      index = order[start : start + recipe.batch_size]
      g = grads_of(params, x_all[index], jnp.asarray(labels)[index])
      g = jax.tree.map(lambda gi, p: gi + recipe.weight_decay * p, g, params)
      momentum = jax.tree.map(lambda b, gi: recipe.momentum * b + gi, momentum, g)
      params = jax.tree.map(lambda p, b, lr=lr: p - lr * b, params, momentum)
    if ep == recipe.epochs // 2 + 1:
      lr *= 0.1 if decay else 1.0
      if reset_momentum:
        momentum = jax.tree.map(jnp.zeros_like, params)
  return params


def test_schedule_and_momentum_reset_match_the_published_loop():
  images, labels = _tiny_set()
  # Epoch = 6: epochs 0..4 at lr, then 5..6 at lr/10 with fresh momentum.
  recipe = TrainRecipe(learning_rate=0.05, batch_size=10, epochs=6, augmentation=None)
  key = jax.random.key(11)
  trained = jax.jit(lambda k: train_one(k, images, labels, recipe, MODEL, SPEC))(key)
  reference = _reference_run(key, images, labels, recipe)
  no_reset = _reference_run(key, images, labels, recipe, reset_momentum=False)
  no_decay = _reference_run(key, images, labels, recipe, decay=False)
  err = _max_abs_diff(trained, reference)
  assert err < 1e-4
  # The reset and the decay are visible: without either the parameters end elsewhere.
  assert _max_abs_diff(trained, no_reset) > 20 * max(err, 1e-6)
  assert _max_abs_diff(trained, no_decay) > 20 * max(err, 1e-6)


def test_one_hot_soft_labels_equal_hard_labels_and_mixed_soft_labels_train():
  images, labels = _tiny_set(num=16)
  recipe = TrainRecipe(batch_size=16, epochs=2, augmentation='flip')
  key = jax.random.key(5)
  hard = jax.jit(lambda k, y: train_one(k, images, y, recipe, MODEL, SPEC))
  soft = jax.jit(lambda k, y: train_one(k, images, y, recipe, MODEL, SPEC, return_loss_sums=True))
  one_hot = jax.nn.one_hot(labels, SPEC.num_classes)
  assert _max_abs_diff(hard(key, labels), soft(key, one_hot)[0]) < 1e-5
  mixed = 0.7 * one_hot + 0.3 / SPEC.num_classes
  params, loss_sums = soft(key, mixed)
  assert np.all(np.isfinite(np.asarray(loss_sums)))
  # Soft targets change the result.
  assert _max_abs_diff(params, soft(key, one_hot)[0]) > 1e-4
  with pytest.raises(ValueError, match='classes'):
    train_one(key, images, jnp.ones((16, 3)) / 3, recipe, MODEL, SPEC)


def _fgsm(eps):
  """A one-step sign-gradient attack of the contract's shape (stands in for attacks/)."""

  def attack(apply_fn, params, x, y, key):
    del key

    def loss(xx):
      return jnp.sum(optax.softmax_cross_entropy_with_integer_labels(apply_fn(params, xx), y))

    return x + eps * jnp.sign(jax.grad(loss)(x))

  return attack


def test_adversarial_training_trains_on_attacked_batches():
  images, labels = _tiny_set(num=16)
  recipe = TrainRecipe(batch_size=16, epochs=1, augmentation=None)
  key = jax.random.key(3)
  calls = []

  def recording_fgsm(apply_fn, params, x, y, key):
    calls.append((x.shape, y.shape, y.dtype))
    return _fgsm(0.5)(apply_fn, params, x, y, key)

  run = jax.jit(
    lambda k, attack: train_one(
      k, images, labels, recipe, MODEL, SPEC, attack, return_loss_sums=True
    ),
    static_argnums=1,
  )
  clean_params, clean_loss = run(key, None)
  adv_params, adv_loss = run(key, recording_fgsm)
  assert calls and calls[0] == ((16, 16, 16, 3), (16,), jnp.int32)
  # Epoch 0 has one batch and starts from the same init: the loss on the FGSM batch
  # is higher than on the clean one, so the adversarial batch replaced the clean one.
  assert float(adv_loss[0]) > float(clean_loss[0]) + 1e-3
  assert _max_abs_diff(adv_params, clean_params) > 1e-4

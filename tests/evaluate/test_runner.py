"""The batched, timed attack runner."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from beard_jax.evaluate.runner import (
  batch_shapes,
  compile_attack,
  compile_transfer,
  identity_attack,
  predict_clean,
  run_attack,
  run_compiled,
  run_transfer,
)


def _linear_model():
  """A fixed linear classifier on 2×2×1 'images': logits = x·W."""
  weights = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3)), jnp.float32)

  def apply_fn(params, x):
    return x.reshape(x.shape[0], -1) @ params

  return apply_fn, weights


def _sign_attack(eps):
  def attack(apply_fn, params, x, y, key):
    del key
    grad = jax.grad(
      lambda z: -jnp.sum(jax.nn.log_softmax(apply_fn(params, z))[jnp.arange(z.shape[0]), y])
    )(x)
    return jnp.clip(x + eps * jnp.sign(grad), 0.0, 1.0)

  return attack


def test_batch_shapes_pad_unless_padding_wastes_over_a_tenth_of_the_pass():
  assert batch_shapes(256, 250) == (250, 6)  # a padded batch: 244 of 500 rows wasted
  assert batch_shapes(10_000, 256) == (256,)  # 240 of 10,240 rows: padded
  assert batch_shapes(41, 4) == (4,)  # 3 of 44
  assert batch_shapes(21, 4) == (4, 1)  # 3 of 24
  assert batch_shapes(40, 16, multiple=8) == (16, 8)  # the remainder rounded to the mesh
  assert batch_shapes(36, 16, multiple=8) == (16, 8)  # 12 of 48 wasted; 4 rounds up to 8
  assert batch_shapes(30, 16, multiple=8) == (16,)  # 14 rounds up to a full batch
  assert batch_shapes(32, 16) == (16,) and batch_shapes(5, 5) == (5,)


@pytest.mark.parametrize(('num_examples', 'shapes'), [(21, (4, 1)), (41, (4,))])
def test_records_match_a_direct_computation_with_a_padded_or_own_last_batch(num_examples, shapes):
  apply_fn, params = _linear_model()
  rng = np.random.default_rng(1)
  images = rng.uniform(size=(num_examples, 2, 2, 1)).astype(np.float32)
  labels = np.argmax(np.asarray(apply_fn(params, images)), -1).astype(np.int32)
  labels[:3] = (labels[:3] + 1) % 3  # Three examples the model gets wrong.
  attack = _sign_attack(0.5)
  compiled = compile_attack(
    lambda value: attack, apply_fn, params, (2, 2, 1), batch_size=4, targeted=False,
    num_examples=num_examples,
  )  # fmt: skip
  assert tuple(compiled.programs) == shapes
  calls = []
  run = run_compiled(
    compiled, images, labels, key=jax.random.key(0), on_batch=lambda i, n, s: calls.append((i, n))
  )
  x_adv = np.asarray(attack(apply_fn, params, jnp.asarray(images), jnp.asarray(labels), None))
  adv_pred = np.argmax(apply_fn(params, x_adv), -1)
  clean_correct = np.argmax(apply_fn(params, images), -1) == labels
  np.testing.assert_array_equal(run.clean_correct, clean_correct)
  np.testing.assert_array_equal(run.adv_pred, adv_pred)
  np.testing.assert_array_equal(run.success, clean_correct & (adv_pred != labels))
  linf = np.abs(x_adv - images).reshape(num_examples, -1).max(-1)
  np.testing.assert_allclose(run.linf, linf, atol=1e-6)
  num_batches = -(-num_examples // 4)
  assert calls == [(i, num_batches) for i in range(num_batches)]
  assert run.batch_seconds.shape == (num_batches,) and run.compile_seconds > 0
  assert run.clean_accuracy == pytest.approx(100.0 * clean_correct.mean())
  assert run.robust_accuracy == pytest.approx(100.0 * (adv_pred == labels).mean())


def test_given_clean_predictions_are_the_ones_scored_and_must_fit():
  apply_fn, params = _linear_model()
  images = np.random.default_rng(3).uniform(size=(6, 2, 2, 1)).astype(np.float32)
  labels = np.asarray(jnp.argmax(apply_fn(params, images), -1), np.int32)
  compiled = compile_attack(
    lambda value: identity_attack, apply_fn, params, (2, 2, 1), batch_size=4, targeted=False
  )
  clean = predict_clean(compiled, images)
  np.testing.assert_array_equal(clean, labels)
  wrong = (clean + 1) % 3
  run = run_compiled(compiled, images, labels, key=jax.random.key(0), clean_predictions=wrong)
  assert not run.clean_correct.any() and run.adv_correct.all()
  with pytest.raises(ValueError, match=r'clean_predictions must have shape \[6\]'):
    run_compiled(compiled, images, labels, key=jax.random.key(0), clean_predictions=clean[:5])


def test_clean_pass_changes_nothing_and_targets_are_checked():
  apply_fn, params = _linear_model()
  images = np.random.default_rng(2).uniform(size=(6, 2, 2, 1)).astype(np.float32)
  labels = np.zeros(6, np.int32)
  run = run_attack(
    identity_attack, apply_fn, params, images, labels, key=jax.random.key(0), batch_size=6
  )
  np.testing.assert_array_equal(run.clean_correct, run.adv_correct)
  assert run.attack_success_rate == 0.0 and run.seconds_per_success is None
  with pytest.raises(ValueError, match='targets must have shape'):
    run_attack(
      identity_attack,
      apply_fn,
      params,
      images,
      labels,
      key=jax.random.key(0),
      batch_size=6,
      targets=np.zeros(5, np.int32),
    )
  with pytest.raises(ValueError, match='NaN'):
    run_attack(
      identity_attack,
      apply_fn,
      params,
      np.full_like(images, np.nan),
      labels,
      key=jax.random.key(0),
      batch_size=6,
    )


def test_targeted_success_means_hitting_the_target():
  apply_fn, params = _linear_model()
  images = np.random.default_rng(3).uniform(size=(8, 2, 2, 1)).astype(np.float32)
  labels = np.argmax(apply_fn(params, images), -1).astype(np.int32)
  targets = (labels + 1) % 3

  def to_target(apply_fn, params, x, y, key):
    grad = jax.grad(
      lambda z: jnp.sum(jax.nn.log_softmax(apply_fn(params, z))[jnp.arange(z.shape[0]), y])
    )(x)
    return x + 5.0 * jnp.sign(grad)

  run = run_attack(
    to_target,
    apply_fn,
    params,
    images,
    labels,
    key=jax.random.key(0),
    batch_size=8,
    targets=targets,
  )
  np.testing.assert_array_equal(run.success, run.clean_correct & (run.adv_pred == targets))
  assert run.targeted


def test_ties_give_the_robust_accuracy_range():
  # The "model" returns the first three pixels as logits; the clean pass keeps them.
  def apply_fn(params, x):
    del params
    return x.reshape(x.shape[0], -1)[:, :3]

  logits = np.asarray(
    [
      [1.0, 1.0, 0.0],  # label 0: right by the tie-break, a tie that includes the label
      [1.0, 1.0, 0.0],  # label 1: wrong by the tie-break, a tie that includes the label
      [1.0, 1.0 + 5e-5, 0.0],  # label 2: a tie without the label, wrong either way
      [2.0, 1.0, 0.0],  # label 0: right, decided
      [2.0, 1.0, 0.0],  # label 1: wrong, decided
    ],
    np.float32,
  )
  images = np.concatenate([logits, np.zeros((5, 1), np.float32)], 1).reshape(5, 2, 2, 1)
  labels = np.asarray([0, 1, 2, 0, 1], np.int32)
  run = run_attack(
    identity_attack, apply_fn, None, images, labels, key=jax.random.key(0), batch_size=5
  )
  np.testing.assert_array_equal(run.on_boundary, [True, True, True, False, False])
  np.testing.assert_array_equal(run.label_in_top2, [True, True, False, True, True])
  assert run.robust_accuracy == pytest.approx(40.0)
  assert run.robust_accuracy_range == pytest.approx((20.0, 60.0))


def test_transfer_scores_the_source_adversarials_on_every_target():
  apply_fn, source = _linear_model()
  rng = np.random.default_rng(2)
  targets = jnp.asarray(np.stack([source, *rng.normal(size=(2, 4, 3))]), jnp.float32)
  images = rng.uniform(size=(10, 2, 2, 1)).astype(np.float32)
  labels = rng.integers(0, 3, size=10).astype(np.int32)
  attack = _sign_attack(0.3)
  compiled = compile_transfer(
    lambda value: attack, apply_fn, source, targets, (2, 2, 1), batch_size=4, targeted=False
  )
  runs = run_transfer(compiled, images, labels, key=jax.random.key(0))
  alone = run_attack(attack, apply_fn, source, images, labels, key=jax.random.key(0), batch_size=4)
  x_adv = np.asarray(attack(apply_fn, source, jnp.asarray(images), jnp.asarray(labels), None))
  assert len(runs) == 3
  for field in ('clean_correct', 'adv_correct', 'adv_pred', 'success', 'linf'):
    np.testing.assert_array_equal(getattr(runs[0], field), getattr(alone, field))
  for target, run in zip(targets, runs, strict=True):
    np.testing.assert_array_equal(run.adv_pred, np.argmax(apply_fn(target, x_adv), -1))
    np.testing.assert_array_equal(
      run.clean_correct, np.argmax(apply_fn(target, images), -1) == labels
    )
    np.testing.assert_array_equal(run.batch_seconds, runs[0].batch_seconds)
  assert (
    runs[1].robust_accuracy != runs[0].robust_accuracy
    or runs[2].robust_accuracy != runs[0].robust_accuracy
  )
  with pytest.raises(ValueError, match='run_transfer'):
    run_compiled(compiled, images, labels, key=jax.random.key(0))

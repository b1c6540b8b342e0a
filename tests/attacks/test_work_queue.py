"""The work queues: slots (DeepFool, Square) and chunks (APGD, FAB-T), and the attacks run with
and without jit."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import attacks
from attacks import work_queue
from attacks.base import uniform_each
from attacks.work_queue import EMPTY
from beard_jax.data.specs import get_dataset_spec
from beard_jax.models import ConvNet, init_params, make_apply_fn


def test_start_loads_the_first_samples_in_order():
  queue = work_queue.start(3, jnp.asarray([4, 2, 0, 1, 3]))
  np.testing.assert_array_equal(queue.sample, [4, 2, 0])
  np.testing.assert_array_equal(queue.steps, [0, 0, 0])
  assert int(queue.taken) == 3 and bool(work_queue.busy(queue))


def test_start_leaves_slots_beyond_the_length_empty():
  queue = work_queue.start(4, jnp.arange(5), length=2)
  np.testing.assert_array_equal(queue.sample, [0, 1, EMPTY, EMPTY])
  live, index = work_queue.held(queue)
  np.testing.assert_array_equal(live, [True, True, False, False])
  np.testing.assert_array_equal(index, [0, 1, 0, 0])  # safe to gather with
  assert not bool(work_queue.busy(work_queue.start(2, jnp.arange(5), length=0)))


def test_refill_serves_freed_slots_in_slot_order_and_counts_the_others():
  queue = work_queue.start(3, jnp.arange(5))
  queue = work_queue.refill(queue, jnp.asarray([True, False, True]))
  np.testing.assert_array_equal(queue.sample, [3, 1, 4])
  np.testing.assert_array_equal(queue.steps, [0, 1, 0])
  queue = work_queue.refill(queue, jnp.asarray([True, True, False]))  # the queue is dry
  np.testing.assert_array_equal(queue.sample, [EMPTY, EMPTY, 4])
  np.testing.assert_array_equal(queue.steps, [0, 0, 1])
  assert int(queue.taken) == 5
  queue = work_queue.refill(queue, jnp.asarray([False, False, True]))
  assert not bool(work_queue.busy(queue))


@pytest.mark.parametrize('slots', [1, 3, 8, 12])
def test_each_queued_sample_runs_its_own_steps_once(slots):
  """A jitted loop where sample i needs `needs[i]` iterations: each is held exactly that long."""
  needs = jnp.asarray([3, 1, 4, 1, 5, 9, 2, 6, 5, 3], jnp.int32)
  order = jnp.asarray([7, 2, 9, 0, 5, 1, 8, 3, 6, 4], jnp.int32)
  length = 8  # samples 6 and 4 are never served

  @jax.jit
  def run(order):
    def body(carry):
      queue, held_for, iterations = carry
      live, index = work_queue.held(queue)
      held_for = held_for.at[jnp.where(live, index, needs.shape[0])].add(1, mode='drop')
      done = live & (queue.steps + 1 >= needs[index])
      return work_queue.refill(queue, done), held_for, iterations + 1

    init = (work_queue.start(slots, order, length), jnp.zeros_like(needs), jnp.int32(0))
    return jax.lax.while_loop(lambda carry: work_queue.busy(carry[0]), body, init)

  queue, held_for, iterations = run(order)
  served = np.isin(np.arange(10), np.asarray(order[:length]))
  np.testing.assert_array_equal(np.asarray(held_for), np.where(served, needs, 0))
  assert int(queue.taken) == length
  total = int(needs[order[:length]].sum())
  assert -(-total // slots) <= int(iterations) <= total


def _marking_stage(calls):
  """A stage that fools its even-labelled active samples, moving them by their own key's draw
  (and records each call it makes)."""

  def stage(apply_fn, params, x, y, keys, active):
    del apply_fn, params
    jax.debug.callback(lambda: calls.append(x.shape[0]))
    fooled = active & (y % 2 == 0)
    moved = x + uniform_each(keys, x.shape[1:], 0.0, 1.0)
    return jnp.where(fooled[:, None], moved, x), active & ~fooled

  return stage


@pytest.mark.parametrize('chunk', [1, 3, 4, 10, 16])
@pytest.mark.parametrize('active_at', [[], [7], [0, 2, 3], [1, 2, 4, 5, 8, 9], list(range(10))])
def test_run_on_active_pays_for_the_active_samples_only(chunk, active_at):
  calls = []
  x = jnp.zeros((10, 3))
  y = jnp.arange(10, dtype=jnp.int32)
  active = jnp.zeros(10, bool).at[jnp.asarray(active_at, jnp.int32)].set(True)
  key = jax.random.key(4)
  run = jax.jit(work_queue.run_on_active, static_argnums=(0, 1, 2))
  x_adv, still = run(_marking_stage(calls), chunk, None, None, x, y, key, active)
  jax.effects_barrier()
  in_chunk = min(chunk, 10)
  assert calls == [in_chunk] * -(-len(active_at) // in_chunk)
  fooled = np.asarray(active) & (np.arange(10) % 2 == 0)
  own_draw = [jax.random.uniform(jax.random.fold_in(key, i), (3,)) for i in range(10)]
  expected = np.where(fooled[:, None], np.stack(own_draw), 0.0)
  np.testing.assert_array_equal(np.asarray(x_adv), expected)
  np.testing.assert_array_equal(np.asarray(still), np.asarray(active) & ~fooled)


def test_run_on_active_with_an_empty_batch_runs_nothing():
  calls = []
  x_adv, still = work_queue.run_on_active(
    _marking_stage(calls), 4, None, None, jnp.zeros((0, 3)), jnp.zeros(0, jnp.int32),
    jax.random.key(0), jnp.zeros(0, bool),
  )  # fmt: skip
  jax.effects_barrier()
  assert calls == [] and x_adv.shape == (0, 3) and still.shape == (0,)


class QueuedAttacksTest(chex.TestCase):
  """DeepFool and Square, traced under jit and run eagerly: same shapes, box, ball and images.

  `chex.variants` runs each test once jitted and once without jit (the loops are lax loops either
  way); the chex shape checks at the attacks' entry run in both.
  """

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    spec = get_dataset_spec('cifar10')
    model = ConvNet(10, width=8)
    cls.apply_fn = staticmethod(make_apply_fn(model, spec, 'pixels'))
    cls.params = init_params(model, spec, jax.random.key(0))
    cls.x = jax.random.uniform(jax.random.key(1), (6, 32, 32, 3))
    logits = cls.apply_fn(cls.params, cls.x)
    cls.y = jnp.argmax(logits, axis=-1).astype(jnp.int32)  # every sample starts right

  def _attack(self, name, **hparams):
    attack = attacks.get_attack(name, **hparams)
    return lambda params, x, y: attack(self.apply_fn, params, x, y, jax.random.key(2))

  @chex.variants(with_jit=True, without_jit=True)
  def test_deepfool_in_the_box_and_independent_of_slots(self):
    runs = [
      self.variant(self._attack('deepfool', steps=3, slots=slots))(self.params, self.x, self.y)
      for slots in (1, 6)
    ]
    for x_adv in runs:
      chex.assert_shape(x_adv, self.x.shape)
      chex.assert_tree_all_finite(x_adv)
      assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    assert np.any(np.asarray(runs[0]) != np.asarray(self.x))
    np.testing.assert_allclose(runs[0], runs[1], atol=1e-3)

  @chex.variants(with_jit=True, without_jit=True)
  def test_square_in_the_ball_and_independent_of_slots(self):
    eps = 8 / 255
    runs = [
      self.variant(self._attack('square', eps=eps, n_queries=8, slots=slots))(
        self.params, self.x, self.y
      )
      for slots in (2, 6)
    ]
    for x_adv in runs:
      chex.assert_shape(x_adv, self.x.shape)
      chex.assert_tree_all_finite(x_adv)
      assert float(jnp.abs(x_adv - self.x).max()) <= eps + 1e-6
    assert np.any(np.asarray(runs[0]) != np.asarray(self.x))
    np.testing.assert_allclose(runs[0], runs[1], atol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_labels_of_the_wrong_shape_fail_before_any_work(self):
    for name in ('deepfool', 'square', 'cw', 'apgd_ce', 'autoattack'):
      with self.assertRaises(AssertionError):
        self.variant(self._attack(name))(self.params, self.x, self.y[:4])

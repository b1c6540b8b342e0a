"""IDM (beard_jax.distill.idm, model_queue): closed-form class steps, the net queue, the loop."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from beard_jax.distill import factorized, idm, real_data
from beard_jax.distill import model_queue as mq
from beard_jax.models.convnet import ConvNet, init_params
from tests.distill.toy import TOY_SPEC

CONFIG = idm.IDMConfig(  # DSA 'crop_flip' keeps the compile short; DM's tests run all ops.
  dsa_strategy='crop_flip',
  batch_real=8,
  net_width=8,
  net_depth=1,
  net_num=5,
  net_generate_interval=2,
  model_train_steps=2,
  trained_bs=8,
  eval_interval=4,
)
MODEL = ConvNet(3, width=8, depth=1)


def test_closed_form_class_pass_equals_the_sequential_loop():
  """K per-class steps of one `torch.optim.SGD(momentum)`, as IDM's loop takes them."""
  torch = pytest.importorskip('torch')
  rng = np.random.default_rng(0)
  num_classes, lr, momentum = 4, 0.2, 0.5
  targets = jnp.asarray(rng.normal(size=(num_classes, 2, 3, 3, 1)), jnp.float32)
  images = rng.normal(size=(num_classes, 2, 3, 3, 1)).astype(np.float32)
  buffer = rng.normal(size=images.shape).astype(np.float32)

  def loss(x, label, key):  # Depends on class `label`'s images only, like IDM's loss_c.
    del key
    return (label + 1.0) * jnp.sum(jnp.square(x - targets[label]) * jnp.cos(x))

  keys = jax.random.split(jax.random.key(0), num_classes)
  config = idm.IDMConfig(learning_rate=lr, momentum=momentum)

  def losses_and_grads(chunk):
    x, labels, chunk_keys = chunk

    def total(x):
      losses = jax.vmap(loss)(x, labels, chunk_keys)
      return jnp.sum(losses), losses

    grads, losses = jax.grad(total, has_aux=True)(x)
    return losses, grads

  first = idm._class_pass(
    jnp.asarray(images), jnp.asarray(buffer), losses_and_grads, keys, config, 3
  )
  second = idm._class_pass(first[0], first[1], losses_and_grads, keys, config, 1)

  param = torch.nn.Parameter(torch.from_numpy(images.copy()))
  optimizer = torch.optim.SGD([param], lr=lr, momentum=momentum)
  optimizer.state[param]['momentum_buffer'] = torch.from_numpy(buffer.copy())
  for ours in (first, second):  # Two iterations: the buffer carries over between them.
    total = 0.0
    for c in range(num_classes):
      x = jnp.asarray(param.detach().numpy())
      value, grad_c = jax.value_and_grad(loss)(x[c], c, keys[c])
      param.grad = torch.from_numpy(np.array(jnp.zeros_like(x).at[c].set(grad_c)))
      optimizer.step()
      total += float(value)
    np.testing.assert_allclose(ours[0], param.detach().numpy(), rtol=1e-5, atol=1e-6)
    buffer_now = optimizer.state[param]['momentum_buffer'].numpy()
    np.testing.assert_allclose(ours[1], buffer_now, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(ours[2]), total, rtol=1e-5)


def test_net_queue_ring_buffer():
  optimizer = mq.net_optimizer(0.01, 0.9, 5e-4)
  init = jax.jit(mq.init_queue, static_argnums=(1, 2, 3, 4))
  queue = init(jax.random.key(0), 4, MODEL, TOY_SPEC, optimizer)
  assert int(queue.size) == 3 and int(queue.head) == 0
  first_kernel = np.asarray(queue.params['params']['conv0']['kernel'][0])
  push = jax.jit(lambda q, k: mq.push(q, k, MODEL, TOY_SPEC, optimizer))
  queue = push(queue._replace(seen=queue.seen.at[0].set(5)), jax.random.key(1))  # Slot 3.
  assert (int(queue.size), int(queue.head)) == (4, 0)
  queue = push(queue, jax.random.key(2))  # Full: replaces the oldest, slot 0, and its meter.
  assert (int(queue.size), int(queue.head)) == (4, 1) and int(queue.seen[0]) == 0
  assert not np.array_equal(queue.params['params']['conv0']['kernel'][0], first_kernel)
  draws = np.stack([mq.draw_slots(queue, jax.random.key(s), 2) for s in range(40)])
  assert all(len(set(row)) == 2 for row in draws.tolist())
  assert set(draws.ravel().tolist()) == {0, 1, 2, 3}
  partial = queue._replace(size=jnp.int32(3), head=jnp.int32(2))  # Slots 2, 3, 0 live.
  draws = np.stack([mq.draw_slots(partial, jax.random.key(s), 3) for s in range(10)])
  assert set(draws.ravel().tolist()) == {2, 3, 0}  # Only live slots.
  metered = queue._replace(correct=queue.correct.at[2].set(3), seen=queue.seen.at[2].set(4))
  assert float(mq.accuracy_percent(metered, 2)) == 75.0
  assert float(mq.accuracy_percent(metered, 1)) == 0.0  # Unseen: torchnet's meter gives 0.
  assert int(mq.reset_meters(metered).seen.sum()) == 0


@functools.partial(jax.jit, static_argnames='config')
def _matching_loss(images, data, config):
  """IDM's matching term (no CE) over 6 fixed random nets: a yardstick for the images."""
  config = config._replace(ce_weight=0.0)

  def one(seed):
    key_net, key_classes = jax.random.split(jax.random.fold_in(jax.random.key(1000), seed))
    params = init_params(MODEL, TOY_SPEC, key_net)
    keys = jax.random.split(key_classes, 3)
    labels = jnp.arange(3, dtype=jnp.int32)
    return jnp.sum(idm.classes_loss(images, labels, keys, params, 0.0, data, TOY_SPEC, config))

  return jnp.mean(jax.lax.map(one, jnp.arange(6)))


def test_idm_loop_learns_is_deterministic_and_chunk_invariant(toy_data):
  start = idm.init_state(jax.random.key(0), toy_data, TOY_SPEC, 1, CONFIG)
  assert start.images.shape == (3, 1, 8, 8, 3) and int(start.queue.size) == 3
  before = float(_matching_loss(start.images, toy_data, CONFIG))
  whole, loss_sum, count = idm.run_chunk(start, jnp.int32(30), toy_data, TOY_SPEC, CONFIG)
  after = float(_matching_loss(whole.images, toy_data, CONFIG))
  assert after < 0.8 * before, (before, after)
  assert float(count) == 30 * 3 and np.isfinite(float(loss_sum))
  # Pushes at 0, 2, …, 28 fill the 5 slots; the meters were reset at 28, then 2 nets trained
  # for 2 steps of 8 images in iterations 28 and 29: 64 images seen.
  assert int(whole.queue.size) == 5 and int(whole.queue.seen.sum()) == 64
  programs, state = idm.run_chunk._cache_size(), start
  for stop in (3, 17, 30):
    state, _, _ = idm.run_chunk(state, jnp.int32(stop), toy_data, TOY_SPEC, CONFIG)
  pairs = zip(
    jax.tree.leaves(whole._replace(key=0)), jax.tree.leaves(state._replace(key=0)), strict=True
  )
  for a, b in pairs:
    np.testing.assert_array_equal(a, b)
  assert idm.run_chunk._cache_size() == programs  # Every stop reused one program.


def test_factorized_initialisation_holds_four_shrunk_real_images(toy_data):
  state = idm.init_state(jax.random.key(0), toy_data, TOY_SPEC, 1, CONFIG)
  images = np.asarray(state.images)  # [3, 1, 8, 8, 3]
  pixels = np.asarray(real_data.to_normalized(TOY_SPEC, toy_data.images))
  shrunk = np.asarray(factorized.downscale2x(pixels.reshape(-1, 8, 8, 3))).reshape(3, 12, 4, 4, 3)
  for c in range(3):
    for rows, cols in ((slice(0, 4), slice(0, 4)), (slice(4, 8), slice(4, 8))):
      quadrant = images[c, 0, rows, cols]
      assert np.abs(shrunk[c] - quadrant).max(axis=(1, 2, 3)).min() < 1e-5  # A real image of c.
  with pytest.raises(ValueError, match='fetch_net_num'):
    idm.init_state(jax.random.key(0), toy_data, TOY_SPEC, 1, CONFIG._replace(fetch_net_num=9))


def test_official_configs_follow_the_commands():
  assert idm.official_config('cifar10', 10) == idm.IDMConfig()
  one = idm.official_config('cifar10', 1)
  assert (one.batch_real, one.net_generate_interval, one.ce_weight) == (5000, 5, 0.5)
  assert idm.official_config('cifar100', 10).model_train_steps == 50
  tiny = idm.official_config('tinyimagenet', 50)
  assert (tiny.init, tiny.ce_weight, tiny.eval_interval) == ('real', 0.8, 1000)
  assert idm.official_config('cifar10', 20) == idm.IDMConfig()  # Unlisted IPC: the IPC-10 row.
  assert idm.IDMConfig().learning_rate == 0.2 and idm.OFFICIAL_ITERATIONS == 20_001

"""DM (beard_jax.distill.dm) on a toy problem: loss, determinism, chunking, parity of the loss."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from beard_jax.distill import dm, real_data
from beard_jax.models.convnet import ConvNet, init_params
from beard_jax.models.torch_import import convert_state_dict
from tests.distill.toy import TOY_SPEC, toy_real_set

# Default DSA strategy, lr 1, momentum 0.5; depth 1 (a depth-3 net on 8×8 images ends in 1×1
# features that barely depend on the input).
CONFIG = dm.DMConfig(batch_real=8, net_width=8, net_depth=1)
MODEL = ConvNet(3, width=8, depth=1)
PLAIN = CONFIG._replace(dsa_strategy='none')


def _leaves_equal(a, b) -> bool:
  return all(
    np.array_equal(np.asarray(x), np.asarray(y))
    for x, y in zip(jax.tree.leaves(_data(a)), jax.tree.leaves(_data(b)), strict=True)
  )


def _data(state):
  return state._replace(key=jax.random.key_data(state.key))


@functools.partial(jax.jit, static_argnames='config')
def _evaluation_loss(images, data, config):
  """Σ_c DM loss averaged over 8 fixed nets and draws: a fixed yardstick for the images."""

  def one(seed):
    key_net, key_classes = jax.random.split(jax.random.fold_in(jax.random.key(1000), seed))
    params = init_params(MODEL, TOY_SPEC, key_net)
    keys = jax.random.split(key_classes, 3)
    labels = jnp.arange(3, dtype=jnp.int32)
    return jnp.sum(dm.classes_loss(images, labels, keys, params, MODEL, data, TOY_SPEC, config))

  return jnp.mean(jax.lax.map(one, jnp.arange(8)))


def test_matching_loss_decreases(toy_data):
  state = dm.init_state(jax.random.key(0), toy_data, TOY_SPEC, 2, CONFIG)
  assert state.images.shape == (3, 2, 8, 8, 3) and state.images.dtype == jnp.float32
  before = float(_evaluation_loss(state.images, toy_data, CONFIG))
  state, loss_sum, count = dm.run_chunk(state, jnp.int32(40), toy_data, TOY_SPEC, CONFIG)
  after = float(_evaluation_loss(state.images, toy_data, CONFIG))
  assert int(state.iteration) == 40 and float(count) == 40 * 3
  assert np.isfinite(float(loss_sum))
  assert after < 0.6 * before, (before, after)


def test_same_key_same_bits_any_chunking_and_one_compile(toy_data):
  start = dm.init_state(jax.random.key(0), toy_data, TOY_SPEC, 2, CONFIG)
  whole, loss_whole, _ = dm.run_chunk(start, jnp.int32(6), toy_data, TOY_SPEC, CONFIG)
  programs = dm.run_chunk._cache_size()
  state = start
  for stop in (1, 2, 5, 6):  # Other chunk boundaries, as a resumed run has.
    state, _, _ = dm.run_chunk(state, jnp.int32(stop), toy_data, TOY_SPEC, CONFIG)
  assert _leaves_equal(whole, state)
  again = dm.init_state(jax.random.key(0), toy_data, TOY_SPEC, 2, CONFIG)
  again, loss_again, _ = dm.run_chunk(again, jnp.int32(6), toy_data, TOY_SPEC, CONFIG)
  assert _leaves_equal(whole, again) and float(loss_whole) == float(loss_again)
  other = dm.init_state(jax.random.key(1), toy_data, TOY_SPEC, 2, CONFIG)
  assert not np.array_equal(other.images, start.images)
  assert dm.run_chunk._cache_size() == programs  # Every stop reused one program.


def test_initialisation_uses_distinct_real_images_of_each_class(toy_data):
  init = jax.jit(dm.init_from_real, static_argnums=(2, 3))
  images = np.asarray(init(jax.random.key(3), toy_data, TOY_SPEC, 4))
  pixels = np.asarray(real_data.to_normalized(TOY_SPEC, toy_data.images))
  for c in range(3):
    matches = [int(np.argmin(np.abs(pixels[c] - image).sum((1, 2, 3)))) for image in images[c]]
    assert len(set(matches)) == 4
    np.testing.assert_allclose(images[c], pixels[c][matches], atol=1e-6)
  with pytest.raises(ValueError, match='IPC 13 needs'):
    dm.init_state(jax.random.key(3), toy_data, TOY_SPEC, 13, CONFIG)
  with pytest.raises(ValueError, match='unknown init'):
    dm.init_state(jax.random.key(3), toy_data, TOY_SPEC, 1, CONFIG._replace(init='zeros'))


def test_classes_vmapped_or_mapped_give_the_same_step(toy_data):
  state = dm.init_state(jax.random.key(0), toy_data, TOY_SPEC, 2, PLAIN)
  step = jax.jit(dm.step, static_argnames=('spec', 'config'))
  vmapped, loss_v = step(state, toy_data, spec=TOY_SPEC, config=PLAIN._replace(class_chunk=3))
  mapped, loss_m = step(state, toy_data, spec=TOY_SPEC, config=PLAIN._replace(class_chunk=1))
  np.testing.assert_allclose(vmapped.images, mapped.images, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(loss_v, loss_m, rtol=1e-5)


def test_dm_loss_and_gradient_match_a_pytorch_dm_loss():
  """With the whole class as the real batch and no DSA, the loss is a plain function: check it."""
  torch = pytest.importorskip('torch')
  from tests.parity.torch_convnet import TorchConvNet

  images, labels = toy_real_set(per_class=6)
  data = real_data.index_by_class(images, labels, 3)
  config = PLAIN._replace(batch_real=6)
  torch.manual_seed(0)
  net = TorchConvNet(num_classes=3, width=8, depth=1, image_size=8)
  params = convert_state_dict({k: v.numpy() for k, v in net.state_dict().items()}, MODEL, 8)
  syn = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32)

  def loss_fn(syn):
    losses = dm.classes_loss(
      syn[None], jnp.array([1]), jax.random.key(0)[None], params, MODEL, data, TOY_SPEC, config
    )
    return losses[0]

  loss, grad = jax.value_and_grad(loss_fn)(jnp.asarray(syn))
  real = np.asarray(real_data.to_normalized(TOY_SPEC, images[labels == 1]))
  real_t = torch.from_numpy(real.transpose(0, 3, 1, 2).copy())
  syn_t = torch.from_numpy(syn.transpose(0, 3, 1, 2)).requires_grad_(True)
  with torch.no_grad():
    real_mean = net.features(real_t).flatten(1).mean(0)
  loss_t = torch.sum((real_mean - net.features(syn_t).flatten(1).mean(0)) ** 2)
  loss_t.backward()
  np.testing.assert_allclose(float(loss), loss_t.item(), rtol=1e-4)
  np.testing.assert_allclose(grad, syn_t.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-3, atol=1e-6)

"""MTT: ZCA, the published settings, the unrolled loss against PyTorch, experts, the build."""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from beard_jax.data.specs import get_dataset_spec
from beard_jax.distill import build_distilled_set, experts, mtt, real_data, zca
from beard_jax.distill.resumable import RunOptions
from beard_jax.models.convnet import ConvNet, init_params
from beard_jax.models.torch_import import convert_state_dict
from beard_jax.train import trainer
from tests.distill.toy import TOY_SPEC, toy_real_set

MODEL = ConvNet(3, width=8, depth=1)
PLAIN = mtt.MTTConfig(syn_steps=3, net_width=8, net_depth=1, dsa_strategy='none')


def test_zca_whitens_as_the_formula_and_inverts():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, size=(300, 4, 4, 3), dtype=np.uint8)
  images[:, :2] //= 2  # Correlated, unequal variances.
  fitted = zca.fit_zca(images, eps=0.1, chunk=64)  # Several chunks.
  x = images.reshape(300, -1).astype(np.float64) / 255
  centred = x - x.mean(0)
  values, vectors = np.linalg.eigh(centred.T @ centred / 299)
  expected = (centred @ vectors / np.sqrt(values + 0.1)) @ vectors.T
  pixels = jnp.asarray(images, jnp.float32) / 255
  whitened = zca.whiten(fitted, pixels)
  np.testing.assert_allclose(np.asarray(whitened).reshape(300, -1), expected, atol=2e-4)
  np.testing.assert_allclose(zca.unwhiten(fitted, whitened), pixels, atol=2e-5)
  # Channel-first flattening (kornia's) gives the same whitened pixels.
  chw = zca.fit_zca(images.transpose(0, 3, 1, 2), eps=0.1)
  np.testing.assert_allclose(
    np.asarray(zca.whiten(chw, pixels.transpose(0, 3, 1, 2))).transpose(0, 2, 3, 1),
    whitened,
    atol=2e-5,
  )
  with pytest.raises(ValueError, match='N ≥ 2'):
    zca.fit_zca(images[:1])


def test_published_settings_and_checks():
  one, ten, fifty = (mtt.official_config('cifar10', ipc) for ipc in (1, 10, 50))
  assert (one.syn_steps, one.expert_epochs, one.max_start_epoch, one.zca) == (50, 2, 2, True)
  assert (ten.syn_steps, ten.max_start_epoch, ten.zca) == (30, 20, True)
  # DC-bench's author-provided rows where copies of the paper's table differ.
  assert (ten.learning_rate, ten.lr_learning_rate, ten.initial_syn_lr) == (100.0, 1e-5, 0.001)
  assert not mtt.official_config('cifar100', 10).zca
  assert mtt.official_config('cifar100', 50).zca
  assert (fifty.max_start_epoch, fifty.zca, fifty.initial_syn_lr) == (40, False, 0.001)
  assert mtt.official_config('tinyimagenet', 10).batch_syn == 200
  assert mtt.official_config('cifar10', 7) == mtt.MTTConfig()  # distill.py's defaults.
  assert mtt.epochs_needed(one) == 3  # Start epochs 0..1, targets 2 epochs later.
  with pytest.raises(ValueError, match='expert_train_epochs'):
    mtt.check_config(ten._replace(expert_train_epochs=20))
  with pytest.raises(ValueError, match='syn_steps must be ≥ 1'):
    mtt.check_config(one._replace(syn_steps=0))


def _student_problem(seed=0):
  """Toy synthetic images [3, 2, 8, 8, 3] and an expert's (start, target) pair."""
  rng = np.random.default_rng(seed)
  images = jnp.asarray(rng.normal(size=(3, 2, 8, 8, 3)), jnp.float32)
  start = init_params(MODEL, TOY_SPEC, jax.random.key(seed))
  target = jax.tree.map(lambda p: p + 0.05 * jnp.sign(p), start)
  flat_start = experts.flatten_params(start)
  _, unravel = ravel_pytree(start)
  return images, flat_start, experts.flatten_params(target), unravel


def test_unrolled_loss_is_one_at_zero_lr_and_remat_changes_nothing():
  images, start, target, unravel = _student_problem()
  loss = jax.jit(mtt.student_loss, static_argnums=(5, 6, 7))
  key = jax.random.key(1)
  assert float(loss(images, 0.0, start, target, key, MODEL, unravel, PLAIN)) == 1.0
  grads = jax.jit(jax.grad(mtt.student_loss, argnums=(0, 1)), static_argnums=(5, 6, 7))
  for config in (PLAIN, PLAIN._replace(batch_syn=4, dsa_strategy='crop_flip')):
    args = (images, 0.01, start, target, key)
    kept = grads(*args, MODEL, unravel, config._replace(remat=False))
    remat = grads(*args, MODEL, unravel, config)
    for a, b in zip(kept, remat, strict=True):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_unrolled_loss_and_gradients_match_the_official_pytorch_unroll():
  """No DSA, the whole set per step: the iteration is a plain function; check it and its
  gradients (images and α) against distill.py's create_graph unroll in PyTorch."""
  torch = pytest.importorskip('torch')
  from tests.parity.torch_convnet import TorchConvNet

  torch.manual_seed(0)
  net = TorchConvNet(num_classes=3, width=8, depth=1, image_size=8)
  start = {k: v.detach() for k, v in net.named_parameters()}
  target = {k: v + 0.05 * torch.sign(v) for k, v in start.items()}
  images = np.random.default_rng(0).normal(size=(3, 2, 8, 8, 3)).astype(np.float32)

  def ours(params):
    return experts.flatten_params(
      convert_state_dict({k: v.numpy() for k, v in params.items()}, MODEL, 8)
    )

  _, unravel = ravel_pytree(init_params(MODEL, TOY_SPEC, jax.random.key(0)))
  loss, (image_grad, lr_grad) = jax.value_and_grad(mtt.student_loss, argnums=(0, 1))(
    jnp.asarray(images), 0.02, ours(start), ours(target), jax.random.key(0), MODEL, unravel, PLAIN
  )

  x = torch.from_numpy(images.reshape(6, 8, 8, 3).transpose(0, 3, 1, 2).copy()).requires_grad_()
  y = torch.arange(3).repeat_interleave(2)
  lr = torch.tensor(0.02, requires_grad=True)
  params = dict(start)
  for name in params:
    params[name] = params[name].clone().requires_grad_()
  first = params
  for _ in range(PLAIN.syn_steps):
    ce = torch.nn.functional.cross_entropy(torch.func.functional_call(net, params, (x,)), y)
    grads = torch.autograd.grad(ce, list(params.values()), create_graph=True)
    params = {k: p - lr * g for (k, p), g in zip(params.items(), grads, strict=True)}
  distance = sum(((params[k] - target[k]) ** 2).sum() for k in params)
  initial = sum(((first[k] - target[k]) ** 2).sum() for k in params)
  loss_t = distance / initial
  loss_t.backward()
  np.testing.assert_allclose(float(loss), loss_t.item(), rtol=1e-4)
  np.testing.assert_allclose(float(lr_grad), lr.grad.item(), rtol=1e-3)
  expected = x.grad.numpy().transpose(0, 2, 3, 1).reshape(images.shape)
  np.testing.assert_allclose(image_grad, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())


def test_iterations_lower_the_loss_on_one_expert_segment():
  """The target is 3 SGD steps (lr 0.05) on the real toy set from the start: images from
  noise learn to reproduce that segment (the loss falls from 1.6 to 0.09 over 30 iterations)."""
  images, labels = toy_real_set()
  inputs = real_data.to_normalized(TOY_SPEC, jnp.asarray(images))
  start = init_params(MODEL, TOY_SPEC, jax.random.key(0))

  def cross_entropy(params):
    log_probs = jax.nn.log_softmax(MODEL.apply(params, inputs))
    return -jnp.mean(jnp.take_along_axis(log_probs, jnp.asarray(labels)[:, None], axis=-1))

  target = start
  for _ in range(3):
    target = jax.tree.map(lambda p, g: p - 0.05 * g, target, jax.grad(cross_entropy)(target))
  trajectories = jnp.stack([experts.flatten_params(start), experts.flatten_params(target)])[None]
  config = PLAIN._replace(
    expert_epochs=1, max_start_epoch=1, learning_rate=10.0, initial_syn_lr=0.05, init='noise'
  )
  data = real_data.index_by_class(images, labels, 3)
  state = mtt.init_state(jax.random.key(0), data, None, TOY_SPEC, 2, config)
  assert state.images.shape == (3, 2, 8, 8, 3)
  state, first, _ = mtt.run_chunk(state, 1, trajectories, TOY_SPEC, config)
  state, later, count = mtt.run_chunk(state, 31, trajectories, TOY_SPEC, config)
  assert int(state.iteration) == 31 and float(count) == 30
  assert float(later) / 30 < 0.5 * float(first), (float(first), float(later) / 30)
  assert float(state.syn_lr) != config.initial_syn_lr  # α is learned too.


def _options(path, progress=None, every=1):
  return RunOptions(str(path), every, 'fp', 'experts', progress or (lambda report: None))


def test_expert_trajectories_are_the_trainers_epochs_and_resume(tmp_path):
  images, labels = toy_real_set()
  inputs = real_data.to_normalized(TOY_SPEC, jnp.asarray(images))
  config = experts.ExpertConfig(
    num_experts=2, train_epochs=3, batch_size=16, dsa_strategy='crop_flip', group_size=2
  )
  keys = jnp.stack([jax.random.fold_in(jax.random.key(0), i) for i in range(2)])
  labels = jnp.asarray(labels, jnp.int32)

  def train(path, **kwargs):
    options = _options(path, **kwargs)
    return experts._train_group(keys, inputs, labels, MODEL, TOY_SPEC, config, options)[0]

  trajectory = train(tmp_path / 'a.npz')
  assert trajectory.shape == (
    2,
    4,
    experts.flatten_params(init_params(MODEL, TOY_SPEC, keys[0])).size,
  )
  recipe = experts.expert_recipe(config)
  for epochs in (0, 2):
    state = trainer.init_state(keys[1], recipe, MODEL, TOY_SPEC)
    state = trainer.train_epochs(state, keys[1], inputs, labels, 0, epochs, recipe, MODEL, TOY_SPEC)
    np.testing.assert_allclose(
      trajectory[1, epochs], experts.flatten_params(state.params), rtol=1e-5, atol=1e-6
    )

  class Interrupt(Exception):
    pass

  def stop_after_one(report):
    if report.iteration >= 1:
      raise Interrupt

  with pytest.raises(Interrupt):
    train(tmp_path / 'b.npz', progress=stop_after_one)
  reports = []
  np.testing.assert_array_equal(train(tmp_path / 'b.npz', progress=reports.append), trajectory)
  assert reports[0].iteration > 1  # Resumed, not restarted.
  reports.clear()
  np.testing.assert_array_equal(train(tmp_path / 'b.npz', progress=reports.append), trajectory)
  assert not reports  # A finished group is loaded, not trained.


def test_zca_build_starts_from_real_images_and_records_the_learned_lr(real_data_path, tmp_path):
  """With 0 iterations the stored set is the real initialisation mapped back from ZCA space
  (whiten, then unwhiten and normalise): it must be real images of the right class."""
  spec = get_dataset_spec('cifar10')
  with np.load(real_data_path('cifar10/train_1k_per_class.npz')) as archive:
    images, labels = archive['images'], archive['labels']
  index = np.concatenate([np.flatnonzero(labels == c)[:8] for c in range(10)])
  images, labels = images[index], labels[index]
  hparams = dict(
    net_width=8,
    net_depth=1,
    syn_steps=2,
    expert_epochs=1,
    max_start_epoch=1,
    num_experts=1,
    expert_train_epochs=1,
    expert_batch=32,
    zca=True,
  )
  path = build_distilled_set(
    'mtt', spec, images, labels, 1, key=0, out_dir=tmp_path, iterations=0, hparams=hparams
  )
  stored = np.load(pathlib.Path(tmp_path, 'npz', 'MTT', 'MTT_CIFAR10_1ipc.npz'))['images']
  real = images.astype(np.float32) / 255
  for c, image in enumerate(stored):
    distances = np.abs(real - image).max(axis=(1, 2, 3))
    assert distances.min() < 2e-3 and labels[distances.argmin()] == c
  sidecar = json.loads(pathlib.Path(path).with_suffix('.json').read_text())
  assert sidecar['learned_lr'] == pytest.approx(0.01) and sidecar['hyperparameters']['zca']
  assert sidecar['experts_seconds'] > 0
  assert (pathlib.Path(sidecar['expert_buffer']) / 'group_000.npz').exists()

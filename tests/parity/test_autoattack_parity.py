"""Parity of the AutoAttack family with torchattacks 3.5.1, on BEARD's DC checkpoint.

- APGD-CE / APGD-DLR: both sides start from the SAME random point (torch's own draw, handed to
  ours), so the runs are the same algorithm on the same inputs up to float rounding; the
  per-sample outcome (fooled or not) must agree on ≥ 99.5 % of the points.
- Square and the AutoAttack ensemble draw their randomness differently (torchattacks shares
  one Square window per batch; ours draws one per image), so only robust accuracy is compared.
  On n images the two accuracies each have a binomial standard error of at most
  √(a(1 − a)/n); their difference, 3·√(2a(1 − a)/n) at 3 σ, bounds the default (small) runs.
  The slow runs use 1,000 images and the full settings, within 1 percentage point.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip('torch', reason='parity tests need torch (the parity extra)')
torchattacks = pytest.importorskip('torchattacks', reason='parity tests need torchattacks 3.5.1')

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from torch_convnet import torch_convnet  # noqa: E402  (tests/parity, on sys.path)

from attacks.apgd import apgd_masked  # noqa: E402
from attacks.autoattack import make_autoattack  # noqa: E402
from attacks.base import sample_keys  # noqa: E402
from attacks.square import make_square  # noqa: E402
from beard_jax.data.specs import get_dataset_spec  # noqa: E402
from beard_jax.models import ConvNet, make_apply_fn  # noqa: E402
from beard_jax.models.torch_import import load_torch_convnet  # noqa: E402

CHECKPOINT = 'beard_model_pool/DC_ConvNet_CIFAR10_50_None.pth'
EPS = 1 / 255  # in pixels: leaves the DC model a robust accuracy well inside (0, 1)


def _setup(real_data_path, n):
  torch.set_num_threads(1)
  ckpt = real_data_path(CHECKPOINT)
  data = np.load(real_data_path('cifar10/test.npz'))
  model = ConvNet(10)
  params = load_torch_convnet(ckpt, model, 32)
  apply_fn = make_apply_fn(model, get_dataset_spec('cifar10'), 'pixels')
  net = torch_convnet(ckpt)
  x = data['images'][:n].astype(np.float32) / 255.0
  y = data['labels'][:n].astype(np.int32)
  # Keep the points both models classify correctly, so torchattacks' internal subset (the
  # clean-correct points) is the whole batch and its noise draw has the batch's shape.
  ours = np.asarray(jnp.argmax(apply_fn(params, jnp.asarray(x)), -1)) == y
  with torch.no_grad():
    theirs = net(_to_torch(x)).argmax(1).numpy() == y
  assert np.mean(ours == theirs) >= 0.99, 'the two models disagree on clean inputs'
  keep = ours & theirs
  return apply_fn, params, net, x[keep], y[keep], n


def _to_torch(x):
  return torch.from_numpy(np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))))


def _robust_torch(net, x_adv_nchw, y):
  with torch.no_grad():
    return net(x_adv_nchw).argmax(1).numpy() == y


def _robust_ours(apply_fn, params, x_adv, y):
  return np.asarray(jnp.argmax(apply_fn(params, x_adv), -1)) == y


@pytest.fixture(scope='module')
def small(real_data_path):
  return _setup(real_data_path, 200)


@pytest.mark.parametrize('loss', ['ce', 'dlr'])
def test_apgd_same_start_same_outcome(small, loss):
  apply_fn, params, net, x, y, _ = small
  x, y = x[:64], y[:64]  # all must agree either way (one miss is over 0.5 % of 64 or of 119)
  steps, seed = 10, 0
  # torchattacks: manual_seed(seed), then t = 2·rand(x.shape) − 1 on the clean-correct subset.
  torch.manual_seed(seed)
  t = (2 * torch.rand(_to_torch(x).shape) - 1).numpy().transpose(0, 2, 3, 1)
  start = x + EPS * t / np.abs(t).reshape(len(t), -1).max(1)[:, None, None, None]
  atk = torchattacks.APGD(
    net, norm='Linf', eps=EPS, steps=steps, n_restarts=1, seed=seed, loss=loss
  )
  theirs = _robust_torch(net, atk(_to_torch(x), torch.from_numpy(y).long()), y)

  run = jax.jit(
    lambda p, xx, yy, s: apgd_masked(
      apply_fn, p, xx, yy, sample_keys(jax.random.key(0), xx.shape[0]),
      jnp.ones(xx.shape[:1], bool), loss=loss,
      eps=EPS, steps=steps, n_restarts=1, rho=0.75, targeted=False, clip_min=0.0,
      clip_max=1.0, x_init=s,
    )[0]
  )  # fmt: skip
  x_adv = run(params, jnp.asarray(x), jnp.asarray(y), jnp.asarray(start, jnp.float32))
  ours = _robust_ours(apply_fn, params, x_adv, y)
  agreement = np.mean(ours == theirs)
  print(f'APGD-{loss}: agreement {agreement:.4f}, robust ours {ours.mean():.4f} '
        f'theirs {theirs.mean():.4f} on {len(y)} points')  # fmt: skip
  assert 0.0 < theirs.mean() < 1.0, 'degenerate setting: pick another eps'
  assert agreement >= 0.995


def _three_sigma(a, n):
  return 3 * math.sqrt(2 * max(a * (1 - a), 1 / n) / n)


def test_square_robust_accuracy_matches(small):
  apply_fn, params, net, x, y, _ = small
  x, y = x[:128], y[:128]
  n_queries = 50
  atk = torchattacks.Square(net, norm='Linf', eps=EPS, n_queries=n_queries, seed=0)
  theirs = _robust_torch(net, atk(_to_torch(x), torch.from_numpy(y).long()), y).mean()
  square = make_square(eps=EPS, n_queries=n_queries, rescale_schedule=True)
  x_adv = jax.jit(lambda p, xx, yy, k: square(apply_fn, p, xx, yy, k))(
    params, jnp.asarray(x), jnp.asarray(y), jax.random.key(0)
  )
  ours = _robust_ours(apply_fn, params, x_adv, y).mean()
  bound = _three_sigma((ours + theirs) / 2, len(y))
  print(f'Square: robust ours {ours:.4f} theirs {theirs:.4f}, bound {bound:.4f}')
  assert abs(ours - theirs) <= bound


def _torchattacks_aa(net, eps, n_queries, n_classes=10):
  """torchattacks' AutoAttack('standard') stages and settings; Square's queries and the
  number of target classes (n_classes − 1) cut down for the default run."""
  seed = 0
  return torchattacks.MultiAttack([
    torchattacks.APGD(net, eps=eps, norm='Linf', seed=seed, loss='ce', n_restarts=1),
    torchattacks.APGDT(net, eps=eps, norm='Linf', seed=seed, n_classes=n_classes, n_restarts=1),
    torchattacks.FAB(net, eps=eps, norm='Linf', seed=seed, multi_targeted=True, n_classes=n_classes,
                     n_restarts=1),
    torchattacks.Square(net, eps=eps, norm='Linf', seed=seed, n_queries=n_queries, n_restarts=1),
  ])  # fmt: skip


def _compare_aa(apply_fn, params, net, x, y, atk, n_queries, n_target_classes=9):
  theirs = _robust_torch(net, atk(_to_torch(x), torch.from_numpy(y).long()), y).mean()
  aa = make_autoattack(
    eps=EPS, variant='torchattacks', n_queries=n_queries, n_target_classes=n_target_classes
  )
  x_adv = jax.jit(lambda p, xx, yy, k: aa(apply_fn, p, xx, yy, k))(
    params, jnp.asarray(x), jnp.asarray(y), jax.random.key(0)
  )
  ours = _robust_ours(apply_fn, params, x_adv, y).mean()
  return ours, theirs


def test_autoattack_robust_accuracy_matches(small):
  apply_fn, params, net, x, y, _ = small
  x, y = x[:64], y[:64]
  atk = _torchattacks_aa(net, EPS, 50, n_classes=3)  # 2 target classes, 50 Square queries
  ours, theirs = _compare_aa(apply_fn, params, net, x, y, atk, 50, n_target_classes=2)
  bound = _three_sigma((ours + theirs) / 2, len(y))
  print(f'AutoAttack: robust ours {ours:.4f} theirs {theirs:.4f}, bound {bound:.4f}')
  assert abs(ours - theirs) <= bound


@pytest.mark.slow
def test_square_full_1000(real_data_path):
  apply_fn, params, net, x, y, _ = _setup(real_data_path, 1000)
  atk = torchattacks.Square(net, norm='Linf', eps=EPS, n_queries=5000, seed=0)
  theirs = _robust_torch(net, atk(_to_torch(x), torch.from_numpy(y).long()), y).mean()
  square = make_square(eps=EPS, n_queries=5000, rescale_schedule=True)
  x_adv = jax.jit(lambda p, xx, yy, k: square(apply_fn, p, xx, yy, k))(
    params, jnp.asarray(x), jnp.asarray(y), jax.random.key(0)
  )
  ours = _robust_ours(apply_fn, params, x_adv, y).mean()
  assert abs(ours - theirs) <= 0.01


@pytest.mark.slow
def test_autoattack_full_1000(real_data_path):
  apply_fn, params, net, x, y, _ = _setup(real_data_path, 1000)
  atk = torchattacks.AutoAttack(net, norm='Linf', eps=EPS, version='standard', n_classes=10,
                                seed=0)  # fmt: skip
  ours, theirs = _compare_aa(apply_fn, params, net, x, y, atk, 5000)
  assert abs(ours - theirs) <= 0.01

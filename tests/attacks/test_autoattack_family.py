"""Properties of the AutoAttack family (APGD-CE/DLR/T, FAB-T, Square, SPSA, AutoAttack).

Real CIFAR-10 test images; a small random ConvNet for the structural properties and BEARD's DC
checkpoint where an attack's strength matters. Settings are cut down (few steps/queries) to
keep the run short; the full settings are exercised by tests/parity.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import attacks
from attacks import losses, spsa, targets
from attacks.apgd import checkpoint_schedule
from attacks.fab import project_linf_box
from attacks.square import p_selection
from beard_jax.data.specs import get_dataset_spec
from beard_jax.models import ConvNet, init_params, make_apply_fn
from beard_jax.models.torch_import import load_torch_convnet

FAMILY = ('apgd_ce', 'apgd_dlr', 'apgd_t', 'fab_t', 'square', 'spsa', 'autoattack')
# Cut-down settings per attack (the defaults are 100 steps / 5,000 queries).
SMALL = {
  'apgd_ce': {'steps': 5},
  'apgd_dlr': {'steps': 5},
  'apgd_t': {'steps': 5, 'n_target_classes': 2},
  'fab_t': {'steps': 5, 'n_target_classes': 2},
  'square': {'n_queries': 30},
  'spsa': {'steps': 2, 'nb_sample': 8},
  'autoattack': {'steps': 5, 'n_queries': 30, 'n_target_classes': 2},
}
SPEC = get_dataset_spec('cifar10')


@pytest.fixture(scope='module')
def images():
  import os
  import pathlib

  path = pathlib.Path(os.environ.get('BEARD_DATA_DIR', '/nonexistent')) / 'cifar10/test.npz'
  if not path.exists():
    pytest.skip(f'{path} missing: set BEARD_DATA_DIR to the shared data folder')
  data = np.load(path)
  return (
    jnp.asarray(data['images'][:32] / 255.0, jnp.float32),
    jnp.asarray(data['labels'][:32], jnp.int32),
  )


@pytest.fixture(scope='module')
def small_net():
  model = ConvNet(10, width=16)
  return make_apply_fn(model, SPEC, 'pixels'), init_params(model, SPEC, jax.random.key(1))


@pytest.fixture(scope='module')
def beard_net():
  import os
  import pathlib

  path = pathlib.Path(os.environ.get('BEARD_DATA_DIR', '/nonexistent'))
  path = path / 'beard_model_pool/DC_ConvNet_CIFAR10_50_None.pth'
  if not path.exists():
    pytest.skip(f'{path} missing: set BEARD_DATA_DIR to the shared data folder')
  model = ConvNet(10)
  return make_apply_fn(model, SPEC, 'pixels'), load_torch_convnet(path, model, 32)


@pytest.fixture(scope='module')
def small_batch(small_net, images):
  """8 images labelled with the random net's own predictions, so every point is attackable."""
  apply_fn, params = small_net
  x = images[0][:8]
  return x, jnp.argmax(apply_fn(params, x), -1).astype(jnp.int32)


def _run(name, apply_fn, params, x, y, key=None, **hparams):
  attack = attacks.get_attack(name, **{**SMALL[name], **hparams})
  fn = jax.jit(lambda p, xx, yy, k: attack(apply_fn, p, xx, yy, k))
  return fn(params, x, y, jax.random.key(0) if key is None else key)


def _robust(apply_fn, params, x, y):
  return np.asarray(jnp.argmax(apply_fn(params, x), -1) == y)


def test_registered():
  assert set(FAMILY) <= set(attacks.ATTACK_NAMES)
  with pytest.raises(ValueError, match='choose from'):
    attacks.get_attack('autoattack', variant='nope')


_SLOW_BALL = ('autoattack', 'apgd_dlr', 'apgd_t')


@pytest.mark.parametrize(
  'name',
  # The slow ones' ball and box are also checked, with short runs, for every path the
  # planner emits (tests/benchmark/test_plan.py); eps = 0 is the same code path.
  [n if n not in _SLOW_BALL else pytest.param(n, marks=pytest.mark.slow) for n in FAMILY],
)
def test_ball_box_and_eps_zero(name, small_net, small_batch):
  apply_fn, params = small_net
  x, y = small_batch
  eps = 4 / 255
  x_adv = np.asarray(_run(name, apply_fn, params, x, y, eps=eps))
  chex.assert_shape(x_adv, x.shape)
  chex.assert_type(x_adv, np.float32)
  chex.assert_tree_all_finite(x_adv)
  assert np.max(np.abs(x_adv - np.asarray(x))) <= eps + 1e-6
  assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
  np.testing.assert_array_equal(_run(name, apply_fn, params, x, y, eps=0.0), x)


def test_custom_box(small_net, images):
  apply_fn, params = small_net
  x = images[0][:8] * 0.5 + 0.25  # inside [0.25, 0.75]
  x_adv = np.asarray(_run('apgd_ce', apply_fn, params, x, images[1][:8], eps=0.2,
                          clip_min=0.25, clip_max=0.75))  # fmt: skip
  assert x_adv.min() >= 0.25 and x_adv.max() <= 0.75


def test_checkpoints_follow_the_paper():
  # p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), N = 100:
  # 22, 41, 57, 70, 80, 87, 93, 99 (1-based iterations).
  is_check, interval = checkpoint_schedule(100)
  assert [i + 1 for i, c in enumerate(is_check) if c] == [22, 41, 57, 70, 80, 87, 93, 99]
  assert [k for k in interval if k] == [22, 19, 16, 13, 10, 7, 6, 6]


def test_square_p_schedule():
  p = lambda i, n, r: float(p_selection(jnp.asarray(i), 0.8, n, r))  # noqa: E731
  assert p(0, 5000, False) == pytest.approx(0.8)
  assert p(10, 5000, False) == pytest.approx(0.8)
  assert p(11, 5000, False) == pytest.approx(0.4)
  assert p(4001, 5000, False) == pytest.approx(0.8 / 128)
  assert p(6, 5000, True) == pytest.approx(0.4)  # it = 12
  assert p(4001, 5000, True) == pytest.approx(0.8 / 512)  # it = 8002


def test_linf_projection_is_minimal():
  rng = np.random.default_rng(0)
  n, d = 64, 50
  p = rng.uniform(0, 1, (n, d)).astype(np.float32)
  w = rng.normal(size=(n, d)).astype(np.float32)
  b = (np.sum(w * p, 1) + rng.normal(0, 2, n)).astype(np.float32)
  out = np.asarray(project_linf_box(jnp.asarray(p), jnp.asarray(w), jnp.asarray(b)), np.float64)
  for i in range(n):
    # Independent check: bisect λ for the largest change of w·z reachable at radius λ.
    need = b[i] - w[i] @ p[i]
    direction = np.sign(need) * np.sign(w[i])
    room = np.where(direction > 0, 1 - p[i], p[i])
    reach = lambda lam: np.sum(np.abs(w[i]) * np.minimum(lam, room))  # noqa: E731,B023
    z = p[i] + out[i]
    assert z.min() >= -1e-6 and z.max() <= 1 + 1e-6
    if reach(1.0) < abs(need):  # unreachable inside the box: goes to the corner
      continue
    lo, hi = 0.0, 1.0
    for _ in range(60):
      mid = (lo + hi) / 2
      lo, hi = (mid, hi) if reach(mid) < abs(need) else (lo, mid)
    assert np.abs(w[i] @ z - b[i]) < 1e-3 * max(1.0, abs(b[i]))
    assert np.max(np.abs(out[i])) == pytest.approx(hi, rel=1e-3, abs=1e-5)


def test_apgd_at_least_as_strong_as_fgsm(beard_net, images):
  apply_fn, params = beard_net
  x, y = images
  eps = 1 / 255
  fgsm = attacks.get_attack('fgsm', eps=eps)(apply_fn, params, x, y, jax.random.key(0))
  x_adv = _run('apgd_ce', apply_fn, params, x, y, eps=eps, steps=10)
  robust_apgd = _robust(apply_fn, params, x_adv, y).sum()
  assert robust_apgd <= _robust(apply_fn, params, fgsm, y).sum()
  assert robust_apgd < _robust(apply_fn, params, x, y).sum()


@pytest.mark.slow  # AutoAttack's outcome: the torchattacks parity test; ball and box: test_plan.
def test_autoattack_is_the_per_sample_worst_case(small_net, small_batch):
  apply_fn, params = small_net
  x, y = small_batch
  eps, key = 2 / 255, jax.random.key(3)
  hp = {'eps': eps, 'steps': 5, 'n_target_classes': 2}
  aa = _run('autoattack', apply_fn, params, x, y, key, variant='torchattacks', n_queries=30, **hp)
  robust_aa = _robust(apply_fn, params, aa, y)
  assert np.max(np.abs(np.asarray(aa) - np.asarray(x))) <= eps + 1e-6
  assert float(aa.min()) >= 0.0 and float(aa.max()) <= 1.0
  stage_hp = {
    'apgd_ce': {'eps': eps, 'steps': 5},
    'apgd_t': hp,
    'fab_t': hp,
    'square': {'eps': eps, 'n_queries': 30, 'rescale_schedule': True},
  }
  robust_all = _robust(apply_fn, params, x, y)
  for i, (name, h) in enumerate(stage_hp.items()):
    # AutoAttack hands stage i the key fold_in(key, i); a point's result depends only on it.
    stage = _run(name, apply_fn, params, x, y, jax.random.fold_in(key, i), **h)
    robust_stage = _robust(apply_fn, params, stage, y)
    assert robust_aa.sum() <= robust_stage.sum()
    robust_all = robust_all & robust_stage
  np.testing.assert_array_equal(robust_aa, robust_all)
  assert robust_aa.sum() < _robust(apply_fn, params, x, y).sum()


def test_autoattack_attacks_only_the_still_robust_points(small_net, small_batch):
  """The model's passes, counted: with every point already misclassified no stage attacks
  anything (the clean pass, the four stage checks and Square's two batched queries); with every
  point right, APGD-CE fools them all in its 2 chunks of 4 and the later stages cost nothing."""
  apply_fn, params = small_net
  x, y = small_batch
  seen = []

  def counting_apply(p, z):
    jax.debug.callback(lambda: seen.append(z.shape[0]))
    return apply_fn(p, z)

  attack = attacks.get_attack('autoattack', **SMALL['autoattack'], chunk=4)
  run = jax.jit(lambda p, xx, yy: attack(counting_apply, p, xx, yy, jax.random.key(0)))
  fixed = [x.shape[0]] * 7
  for labels, apgd_ce_passes in (((y + 1) % 10, []), (y, [4] * 2 * (1 + 1 + 5))):
    seen.clear()
    x_adv = run(params, x, labels)
    jax.effects_barrier()
    assert sorted(seen) == sorted(fixed + apgd_ce_passes)
  assert not _robust(apply_fn, params, x_adv, y).any()


@pytest.mark.parametrize(
  'name', ['apgd_t', 'fab_t', pytest.param('autoattack', marks=pytest.mark.slow)]
)
def test_chunked_results_do_not_depend_on_the_chunk(name, beard_net, images):
  """Each sample draws from its own key, so chunks of 5 and one of 32 agree (up to rounding,
  which could flip a decision on another CPU; here none does)."""
  apply_fn, params = beard_net
  x, y = images
  runs = {
    chunk: np.asarray(_run(name, apply_fn, params, x, y, eps=2 / 255, chunk=chunk))
    for chunk in (5, 32)
  }
  robust = {chunk: _robust(apply_fn, params, jnp.asarray(adv), y) for chunk, adv in runs.items()}
  assert 0 < robust[32].sum() < _robust(apply_fn, params, x, y).sum()
  np.testing.assert_array_equal(robust[5], robust[32])
  np.testing.assert_allclose(runs[5], runs[32], atol=5e-3)


def test_apgd_t_one_run_per_target_and_targeted_apgd_hits_target(beard_net, images):
  apply_fn, params = beard_net
  x, y = images
  runner_up = np.asarray(jnp.argsort(apply_fn(params, x), -1)[:, -2])
  one = _run('apgd_t', apply_fn, params, x, y, eps=2 / 255, n_target_classes=1, steps=10)
  two = _run('apgd_t', apply_fn, params, x, y, eps=2 / 255, n_target_classes=2, steps=10)
  # The first target class runs identically in both; the second only adds successes.
  robust_one, robust_two = _robust(apply_fn, params, one, y), _robust(apply_fn, params, two, y)
  assert np.all(robust_two <= robust_one)
  kept = ~robust_one
  np.testing.assert_array_equal(np.asarray(two)[kept], np.asarray(one)[kept])
  # Sanity: the runner-up target pulls most fooled points into the runner-up class.
  changed = kept & _robust(apply_fn, params, x, y)
  assert changed.sum() >= 5
  pred = np.asarray(jnp.argmax(apply_fn(params, one), -1))
  assert np.mean(pred[changed] == runner_up[changed]) > 0.5
  target = targets.next_class(y, 10)
  x_t = _run('apgd_ce', apply_fn, params, x, target, eps=4 / 255, steps=10, targeted=True)
  pred_t = np.asarray(jnp.argmax(apply_fn(params, x_t), -1))
  moved = np.any(np.asarray(x_t != x), axis=(1, 2, 3))
  assert moved.sum() >= 5
  np.testing.assert_array_equal(pred_t[moved], np.asarray(target)[moved])


def test_spsa_lowers_the_margin(small_net, small_batch):
  apply_fn, params = small_net
  x, y = small_batch
  x_adv = _run('spsa', apply_fn, params, x, y, eps=4 / 255, steps=5, nb_sample=32)
  before = losses.margin(apply_fn(params, x), y)
  after = losses.margin(apply_fn(params, x_adv), y)
  assert float(jnp.mean(after)) > float(jnp.mean(before))  # max_other − z_y grows


def test_compiles_once_per_shape(small_net, images):
  apply_fn, params = small_net
  traces = []

  def counting_apply(p, z):
    traces.append(1)
    return apply_fn(p, z)

  attack = attacks.get_attack('apgd_ce', steps=3)
  fn = jax.jit(lambda p, xx, yy, k: attack(counting_apply, p, xx, yy, k))
  x, y = images
  fn(params, x[:8], y[:8], jax.random.key(0)).block_until_ready()
  first = len(traces)
  fn(params, x[8:16], y[8:16], jax.random.key(1)).block_until_ready()
  assert len(traces) == first


@pytest.mark.parametrize('name', ['apgd_ce', pytest.param('square', marks=pytest.mark.slow)])
def test_vmap_over_params_equals_loop(name, small_batch):
  model = ConvNet(10, width=16)
  apply_fn = make_apply_fn(model, SPEC, 'pixels')
  stack = [init_params(model, SPEC, jax.random.key(s)) for s in range(2)]
  stacked = jax.tree.map(lambda *a: jnp.stack(a), *stack)
  x, y = small_batch
  attack = attacks.get_attack(name, eps=4 / 255, **SMALL[name])
  single = lambda p: attack(apply_fn, p, x, y, jax.random.key(0))  # noqa: E731
  batched = jax.jit(jax.vmap(single))(stacked)
  for i, p in enumerate(stack):
    np.testing.assert_allclose(batched[i], jax.jit(single)(p), atol=1e-5)


def test_same_key_same_output_other_key_differs(small_net, small_batch):
  apply_fn, params = small_net
  x, y = small_batch
  a = _run('square', apply_fn, params, x, y, jax.random.key(5), eps=8 / 255)
  b = _run('square', apply_fn, params, x, y, jax.random.key(5), eps=8 / 255)
  c = _run('square', apply_fn, params, x, y, jax.random.key(6), eps=8 / 255)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(np.asarray(a), np.asarray(c))


@pytest.mark.slow  # Also, fast and with and without jit: test_work_queue.py.
def test_square_result_does_not_depend_on_slots(beard_net, images):
  """The work queue changes only the schedule: 1, 5 or all 32 samples in flight agree.

  Up to float rounding, which could flip an accept decision on another CPU; here none does.
  """
  apply_fn, params = beard_net
  x, y = images
  runs = {
    slots: np.asarray(
      _run('square', apply_fn, params, x, y, eps=4 / 255, n_queries=40, slots=slots)
    )
    for slots in (1, 5, 32)
  }
  robust = {slots: _robust(apply_fn, params, jnp.asarray(adv), y) for slots, adv in runs.items()}
  # Some samples are fooled and some resist, so the queue really refills slots.
  assert 0 < robust[32].sum() < _robust(apply_fn, params, x, y).sum()
  for slots in (1, 5):
    np.testing.assert_array_equal(robust[slots], robust[32])
    np.testing.assert_allclose(runs[slots], runs[32], atol=1e-5)


@pytest.mark.parametrize('name', ['apgd_ce', 'apgd_t', 'fab_t', 'autoattack'])
def test_chunked_attacks_reject_a_chunk_below_one(name):
  with pytest.raises(ValueError, match='chunk must be None or >= 1'):
    attacks.get_attack(name, chunk=0)


def test_square_rejects_bad_slots():
  with pytest.raises(ValueError, match='slots must be None or >= 1'):
    attacks.get_attack('square', slots=0)


def test_spsa_chunking_bounds_memory_without_changing_the_directions(small_net, small_batch):
  apply_fn, params = small_net
  x, y = small_batch
  runs = [
    np.asarray(_run('spsa', apply_fn, params, x, y, steps=2, nb_sample=16, max_batch_size=m))
    for m in (2, 16)
  ]
  np.testing.assert_allclose(runs[0], runs[1], atol=1e-4)  # Same directions; sums round apart.
  # A 256-image batch evaluates 8 directions per pass (4,096 images), not 64 (32,768).
  assert spsa.default_directions_per_pass(256) == 8
  assert spsa.default_directions_per_pass(1) == 64 and spsa.default_directions_per_pass(5000) == 1
  resolved = attacks.resolve_hparams('spsa', {'nb_sample': 128}, 250)
  assert resolved['max_batch_size'] == 8

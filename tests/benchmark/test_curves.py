"""`--sweep` and the curves: parsing, planning, traced points equal static ones, end to end."""

import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pool_fixtures import beard_checkpoint_pool, launch_command, launch_ok, read_records

import attacks
from beard_jax.benchmark.plan import plan_cells, resolve_plan
from beard_jax.benchmark.sweep import parse_sweep
from beard_jax.errors import ConfigError
from beard_jax.evaluate.runner import compile_attack, run_attack, run_compiled
from beard_jax.leaderboard.curves import area_frame, normalized_area
from beard_jax.metrics import compute_metrics
from beard_jax.models.pool import ModelEntry
from configs import default


def _plan(**overrides):
  config = default.get_config()
  config.update({'model_pool': '.', 'batch_size': 4, **overrides})
  return resolve_plan(config)


def test_sweep_values_parse_as_fractions_and_bad_ones_say_what_is_expected():
  sweep = parse_sweep('eps: 2/255, 0.03 ,8/255')
  assert sweep.name == 'eps' and [p.text for p in sweep.points] == ['2/255', '0.03', '8/255']
  assert [p.value for p in sweep.points] == [2 / 255, 0.03, 8 / 255]
  assert parse_sweep('') is None
  for text, message in [
    ('2/255,4/255', 'expected <hyperparameter>:<v1>'),
    ('eps:', 'no values'),
    ('eps:two', "'two' is not a number"),
    ('eps:-1/255', 'must be a finite number >= 0'),
    ('eps:1/255,1/255', 'repeated'),
  ]:
    with pytest.raises(ConfigError, match=message):
      parse_sweep(text)


def test_the_plan_sweeps_every_attack_with_the_hyperparameter_after_its_ordinary_cell():
  plan = _plan(attacks='clean,fgsm,pgd,cw', modes='untargeted', sweep='eps:0,8/255')
  assert sorted(plan.sweeps) == [('fgsm', False), ('pgd', False)]  # C&W has no eps.
  entry = ModelEntry('DC', 'cifar10', 10, 0, 'standard', 'DC_seed0', 'checkpoint')
  cells = [(c.attack, c.sweep) for c in plan_cells([entry], plan)]
  assert cells == [
    ('clean', ''),
    ('fgsm', ''),
    ('fgsm', 'eps=0'),
    ('fgsm', 'eps=8/255'),
    ('pgd', ''),
    ('pgd', 'eps=0'),
    ('pgd', 'eps=8/255'),
    ('cw', ''),
  ]
  point = plan_cells([entry], plan)[3]
  assert plan.cell_hparams(point) == {**plan.hparams[('fgsm', False)], 'eps': 8 / 255}
  steps = _plan(attacks='pgd', modes='targeted', sweep='steps:1,2,4')
  assert [p.value for p in steps.sweeps[('pgd', True)].points] == [1, 2, 4]
  assert all(isinstance(p.value, int) for p in steps.sweeps[('pgd', True)].points)


@pytest.mark.parametrize(
  ('flags', 'message'),
  [
    (dict(attacks='cw', sweep='eps:1/255'), "no attack of --attacks has a hyperparameter 'eps'"),
    (dict(attacks='pgd', sweep='steps:1.5'), 'pgd steps takes integers, got 1.5'),
    (dict(attacks='pgd', sweep='targeted:1'), "'targeted' is True, not a number"),
  ],
)
def test_a_sweep_no_planned_attack_can_run_is_refused(flags, message):
  with pytest.raises(ConfigError, match=message):
    _plan(modes='targeted', **flags)


def _linear(params, x):
  return x.reshape(x.shape[0], -1) @ params['w'] + params['b']


@pytest.mark.parametrize(
  ('attack', 'name', 'value'),
  [(a, n, v) for a in ('fgsm', 'pgd', 'pgd_l2') for n, v in (('eps', 0.05), ('steps', 3))
   if n in attacks.get_spec(a).traced] + [('pgd', 'step_size', 0.02)],
)  # fmt: skip
def test_a_traced_sweep_point_gives_the_bits_of_the_attack_built_with_that_value(
  attack, name, value
):
  keys = jax.random.split(jax.random.key(0), 3)
  params = {'w': jax.random.normal(keys[0], (48, 10)), 'b': jnp.zeros(10)}
  x = np.asarray(jax.random.uniform(keys[1], (6, 4, 4, 3)))
  y = np.arange(6, dtype=np.int32)
  hparams = attacks.resolve_hparams(attack, {'random_start': True} if 'pgd' in attack else {}, 6)
  static = run_attack(
    attacks.get_attack(attack, **{**hparams, name: value}), _linear, params, x, y,
    key=keys[2], batch_size=4,
  )  # fmt: skip
  make_attack = attacks.traced_attack_maker(attack, hparams, name)
  compiled = compile_attack(make_attack, _linear, params, x.shape[1:], batch_size=4, targeted=False)
  traced = run_compiled(compiled, x, y, key=keys[2], value=value)
  np.testing.assert_array_equal(traced.adv_pred, static.adv_pred)
  np.testing.assert_allclose(traced.linf, static.linf, rtol=1e-6, atol=1e-7)


def test_the_normalised_area_is_the_mean_accuracy_over_the_range():
  assert normalized_area(np.array([0.0, 2.0, 4.0]), np.array([100.0, 50.0, 0.0])) == 50.0
  # Unequal spacing, unsorted: ((90 + 60) / 2 · 1 + (60 + 30) / 2 · 2) / 3 = 55.
  assert normalized_area(np.array([4.0, 1.0, 2.0]), np.array([30.0, 90.0, 60.0])) == 55.0
  assert normalized_area(np.array([8.0]), np.array([12.5])) == 12.5


def test_areas_are_per_seed_then_averaged():
  def record(seed, text, value, acc):
    return dict(method='DM', dataset='cifar10', ipc=10, protocol='standard', training='standard',
                attack='pgd', targeted=False, seed=seed, sweep=f'eps={text}',
                hparams={'eps': value}, robust_acc=acc)  # fmt: skip

  records = [record(0, '0', 0.0, 80.0), record(0, '2', 2.0, 40.0),
             record(1, '0', 0.0, 60.0), record(1, '2', 2.0, 20.0)]  # fmt: skip
  (row,) = area_frame(records).to_dict('records')
  assert (row['area'], row['area_std'], row['seeds'], row['range']) == (50.0, 10.0, 2, '0..2')


@pytest.fixture(scope='module')
def swept_run(real_data_path, tmp_path_factory):
  """BEARD's DC checkpoint (clean 54 %: the points have something to take away), 16 images."""
  root = tmp_path_factory.mktemp('curves')
  pool = beard_checkpoint_pool(root, real_data_path, ['DC_ConvNet_CIFAR10_50_None.pth'])
  workdir = root / 'w'
  command = launch_command(
    pool, real_data_path('.'), workdir, '--ipc=50', '--attacks=fgsm,pgd',
    '--modes=untargeted', '--sweep=eps:0,2/255,8/255',
  )  # fmt: skip
  return command, launch_ok(command), workdir, read_records(workdir)


def test_sweep_points_are_recorded_share_one_program_and_stay_out_of_the_metrics(swept_run):
  _, _, workdir, records = swept_run
  points = {(r['attack'], r['sweep']): r for r in records if r['sweep']}
  assert sorted(points) == [
    (a, f'eps={v}') for a in ('fgsm', 'pgd') for v in ('0', '2/255', '8/255')
  ]
  for attack in ('fgsm', 'pgd'):
    at_zero = points[(attack, 'eps=0')]
    assert at_zero['clean_acc'] > 0 and at_zero['mean_linf'] == 0.0
    assert at_zero['robust_acc'] == at_zero['clean_acc']
    assert points[(attack, 'eps=8/255')]['robust_acc'] < at_zero['robust_acc']
    assert points[(attack, 'eps=8/255')]['hparams']['eps'] == pytest.approx(8 / 255)
    assert points[(attack, 'eps=8/255')]['mean_linf'] <= 8 / 255 + 1e-6
    # One compiled program per (model, attack, mode): the later points report no compile.
    assert points[(attack, 'eps=0')]['compile_seconds'] > 0
    assert points[(attack, 'eps=2/255')]['compile_seconds'] == 0.0
  ordinary = [r for r in records if not r['sweep']]
  assert compute_metrics(records) == compute_metrics(ordinary)
  report = (workdir / 'report.md').read_text()
  assert '## Curves (`--sweep`)' in report and 'eps=2/255' in report
  assert (workdir / 'leaderboards' / 'curves.png').stat().st_size > 10_000
  assert 'alt="curves"' in (workdir / 'leaderboards' / 'leaderboards.html').read_text()
  assert 'eps' in (workdir / 'leaderboards' / 'curve_areas.csv').read_text()


@pytest.mark.slow  # One more launch; resuming cells is tested in test_launch_resume.
def test_a_rerun_with_the_sweep_resumes_and_adding_a_point_runs_only_that_point(swept_run):
  command, env, workdir, records = swept_run
  extended = [c if not c.startswith('--sweep') else '--sweep=eps:0,2/255,4/255,8/255'
              for c in command]  # fmt: skip
  result = subprocess.run(extended, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  after = read_records(workdir)
  assert after[: len(records)] == records
  assert sorted((r['attack'], r['sweep']) for r in after[len(records) :]) == [
    ('fgsm', 'eps=4/255'),
    ('pgd', 'eps=4/255'),
  ]

"""The resolve step: every (protocol, attack, mode) the planner emits runs; bad flags stop first."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import attacks
from beard_jax import protocols
from beard_jax.benchmark import distill_pool
from beard_jax.benchmark.plan import resolve_plan
from beard_jax.data.real import ImageSet
from beard_jax.errors import ConfigError
from configs import default

# Iteration counts shrunk so that every path compiles and runs in seconds; the paths
# (factory, mode, masks, work queues) are the protocol's own.
_SHORT = {'steps': 2, 'n_queries': 3, 'nb_sample': 8, 'max_batch_size': 8}


def _config(**overrides):
  config = default.get_config()
  config.update({'model_pool': '.', **overrides})
  return config


def _emitted_paths():
  """(protocol, attack, targeted, hparams) for everything the planner emits, all attacks on."""
  paths = []
  for protocol in protocols.PROTOCOLS.values():
    plan = resolve_plan(
      _config(protocol=protocol.name, attacks=','.join(protocol.attack_hparams), batch_size=4)
    )
    for (attack, targeted), hparams in sorted(plan.hparams.items()):
      name = f'{protocol.name}-{attack}-{"targeted" if targeted else "untargeted"}'
      runs_as = plan.runs_as(attack, targeted)  # beard's untargeted 'spsa' runs AutoAttack.
      paths.append(pytest.param(protocol, runs_as, targeted, dict(hparams), id=name))
  return paths


def _linear(params, x):
  """A linear classifier [B, 8, 8, 3] → [B, 10] logits: compiles fast, attacks behave alike."""
  return x.reshape(x.shape[0], -1) @ params['w'] + params['b']


@pytest.fixture(scope='module')
def tiny_model():
  keys = jax.random.split(jax.random.key(0))
  return {'w': jax.random.normal(keys[0], (192, 10)), 'b': jax.random.normal(keys[1], (10,))}


@pytest.mark.parametrize(('protocol', 'attack', 'targeted', 'hparams'), _emitted_paths())
def test_every_planned_attack_and_mode_builds_and_runs(
  tiny_model, protocol, attack, targeted, hparams
):
  accepted = inspect.signature(attacks.get_spec(attack).factory).parameters
  hparams.update({k: v for k, v in _SHORT.items() if k in accepted})
  fn = jax.jit(attacks.get_attack(attack, **hparams), static_argnums=0)
  x = jax.random.uniform(jax.random.key(1), (4, 8, 8, 3))
  y = jnp.array([0, 1, 2, 3], jnp.int32)
  x_adv = np.asarray(fn(_linear, tiny_model, x, (y + 1) % 10 if targeted else y, jax.random.key(2)))
  assert x_adv.shape == x.shape and np.isfinite(x_adv).all()
  assert x_adv.min() >= hparams['clip_min'] - 1e-6 and x_adv.max() <= hparams['clip_max'] + 1e-6
  if 'eps' in hparams and attack != 'pgd_l2':
    assert np.abs(x_adv - np.asarray(x)).max() <= hparams['eps'] + 1e-5


def test_the_default_config_plans_targeted_autoattack():
  plan = resolve_plan(_config())
  assert ('autoattack', True) in plan.hparams and ('deepfool', True) in plan.hparams


def test_beard_skips_what_its_code_runs_untargeted_only():
  plan = resolve_plan(_config(protocol='beard'))
  assert ('autoattack', True) not in plan.hparams and ('deepfool', True) not in plan.hparams
  assert plan.runs('clean', True) and plan.runs('pgd', True)


def test_beard_runs_its_query_branches_as_its_code_does():
  plan = resolve_plan(_config(protocol='beard', attacks='square,spsa'))
  # Square in both modes with torchattacks' defaults, as eva_utils.epoch builds it.
  assert plan.hparams[('square', True)]['n_queries'] == 5000 and plan.runs('square', True)
  # 'Spsa' targeted: torchattacks.SPSA(eps=8/255) defaults, one Adam step.
  spsa = plan.hparams[('spsa', True)]
  assert (spsa['steps'], spsa['lr'], spsa['delta'], spsa['nb_sample']) == (1, 0.01, 0.01, 128)
  assert plan.runs_as('spsa', True) == 'spsa'
  # 'Spsa' untargeted: its code builds AutoAttack (eps=8/255) under that name.
  assert plan.runs_as('spsa', False) == 'autoattack'
  assert plan.hparams[('spsa', False)] == plan.hparams[('spsa', False)] | {
    'variant': 'torchattacks'
  }
  standard = resolve_plan(_config(attacks='spsa'))
  assert (
    standard.runs_as('spsa', False) == 'spsa' and standard.hparams[('spsa', False)]['steps'] == 100
  )


@pytest.mark.parametrize(
  ('overrides', 'message'),
  [
    ({'attacks': 'pgd,pdg'}, r"unknown --attacks 'pdg' for the standard protocol; choose from"),
    ({'modes': 'untargetted'}, r"unknown --modes 'untargetted'; choose from"),
    ({'modes': ''}, r'--modes is empty'),
    ({'num_examples': -9990}, r'--num_examples must be >= 0, got -9990'),
    ({'seeds': 0}, r'--seeds must be >= 1'),
    ({'dataset': 'cifar11'}, r"unknown --dataset 'cifar11'; choose from cifar10, cifar100"),
    ({'protocol': 'bread'}, r"unknown --protocol 'bread'"),
    ({'recipe': 'sgdd'}, r"unknown --recipe 'sgdd'"),
    ({'alpha': 1.5}, r'--alpha must lie in \[0, 1\]'),
    ({'metrics_type': 'rr'}, r"unknown --metrics_type 'rr'"),
    ({'matmul_precision': 'tf32'}, r"unknown --matmul_precision 'tf32'"),
    ({'task_index': 2, 'num_tasks': 2}, r'need 0 <= --task_index < --num_tasks'),
    ({'merge': True}, r'--merge gathers the task files of a sweep'),
    ({'data_dir': '/no/such/dir'}, r'--data_dir=/no/such/dir is not a directory'),
    ({'model_pool': '', 'distill': ''}, r'nothing to evaluate'),
    (
      {'model_pool': '', 'distill': 'dm,dmm'},
      r"unknown --distill 'dmm'; choose from bacon, dc, dm, dsa, herding, idm, kcenter, mtt, "
      r'random$',
    ),
    ({'model_pool': '', 'ipc': 0}, r'--distill builds sets of one IPC'),
    ({'distill_iterations': -1}, r'--distill_iterations must be >= 0'),
    (
      {'model_pool': '', 'distill': 'dm,mtt', 'distill_hparams': 'num_expert=2'},
      r'--distill_hparams: num_expert is not a hyperparameter of --distill=dm,mtt; choose from .*'
      r'num_experts',
    ),
    (
      {'model_pool': '', 'distill': 'mtt', 'distill_hparams': 'num_experts=two'},
      r"--distill_hparams: num_experts='two' is not an integer",
    ),
    (
      {'model_pool': '', 'distill': 'mtt', 'distill_hparams': 'zca=maybe'},
      r"--distill_hparams: zca='maybe' is not true or false",
    ),
    (
      {'model_pool': '', 'distill': 'dm', 'distill_hparams': 'batch_real'},
      r"--distill_hparams: expected name=value, got 'batch_real'",
    ),
    ({'dataset_pool': '.'}, r'either --model_pool .* or distilled sets, not both'),
  ],
)
def test_bad_flags_are_refused_with_what_to_do(overrides, message):
  with pytest.raises(ConfigError, match=message):
    resolve_plan(_config(**overrides))


def test_distill_hparams_reach_the_methods_that_have_them(monkeypatch):
  config = _config(model_pool='', distill='dm,mtt', distill_hparams='batch_real=8,zca=false')
  plan = resolve_plan(config)
  calls = {}

  def build(method, spec, images, labels, ipc, **kwargs):
    calls[method] = kwargs['hparams']

  monkeypatch.setattr(distill_pool, 'build_distilled_set', build)
  monkeypatch.setattr(
    distill_pool, 'load_real_split', lambda *args: ImageSet(None, np.zeros(0), ())
  )
  monkeypatch.setattr(distill_pool, '_found_sets', lambda plan: {})
  distill_pool.distilled_sets(plan)
  assert calls == {'dm': {'batch_real': 8}, 'mtt': {'zca': False}}
  assert plan.result_config()['distill_hparams'] == 'batch_real=8,zca=false'
  assert 'distill_hparams' not in resolve_plan(_config()).result_config()  # Old hashes hold.


def test_the_plan_is_frozen_and_keeps_the_callers_config():
  config = _config()
  plan = resolve_plan(config)
  assert plan.config.batch_size == 250 and config.batch_size == 0
  with pytest.raises((AttributeError, TypeError)):
    plan.config.batch_size = 1


def test_download_needs_a_data_dir_and_may_create_it(monkeypatch, tmp_path):
  monkeypatch.delenv('BEARD_DATA_DIR', raising=False)
  with pytest.raises(ConfigError, match='--download needs --data_dir'):
    resolve_plan(_config(download=True))
  plan = resolve_plan(_config(download=True, data_dir=str(tmp_path / 'new')))
  assert plan.config.data_dir == str(tmp_path / 'new')


def test_data_dir_defaults_to_the_environment(monkeypatch, tmp_path):
  monkeypatch.setenv('BEARD_DATA_DIR', str(tmp_path))
  assert resolve_plan(_config()).config.data_dir == str(tmp_path)

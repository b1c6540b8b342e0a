"""What a record says produced it: resolved attack hyperparameters and the JAX numerics."""

import pytest

from attacks import deepfool, square, work_queue
from beard_jax import protocols, provenance
from beard_jax.benchmark.plan import RESULT_FIELDS, resolve_plan, with_protocol_defaults
from beard_jax.benchmark.run import matmul_precision_scope
from configs import beard, default


def _plan(protocol, attacks, **overrides):
  config = default.get_config()
  config.update(protocol=protocol, attacks=attacks, model_pool='.', **overrides)
  return resolve_plan(config)


@pytest.mark.parametrize('protocol', [protocols.BEARD, protocols.STANDARD])
def test_deepfool_record_names_the_slots_that_ran(protocol):
  hparams = _plan(protocol.name, 'deepfool').hparams[('deepfool', False)]
  assert hparams['slots'] == deepfool.default_slots() == deepfool.CPU_SLOTS
  assert hparams['targeted'] is False
  # Everything else is the protocol's own setting.
  for name, value in protocol.attack_hparams['deepfool'].items():
    assert hparams[name] == value


@pytest.mark.parametrize('attack', ['square', 'autoattack'])
def test_square_slots_are_resolved_and_recorded(attack):
  hparams = _plan('standard', attack, batch_size=64).hparams[(attack, True)]
  assert hparams['slots'] == square.default_slots(64) == square.CPU_SLOTS


@pytest.mark.parametrize('attack', ['apgd_ce', 'apgd_t', 'fab_t', 'autoattack'])
def test_chunks_are_resolved_and_recorded(attack):
  hparams = _plan('standard', attack, batch_size=64).hparams[(attack, False)]
  assert hparams['chunk'] == work_queue.default_chunk(64) == work_queue.CPU_CHUNK


def test_other_attacks_keep_the_protocol_hparams():
  hparams = _plan('beard', 'pgd').hparams[('pgd', True)]
  assert hparams == dict(protocols.BEARD.attack_hparams['pgd'], targeted=True)


def test_precision_scope_applies_validates_and_restores():
  before = provenance.library_versions()['matmul_precision']
  with matmul_precision_scope('highest'):
    assert provenance.library_versions()['matmul_precision'] == 'highest'
    with matmul_precision_scope('default'):
      assert provenance.library_versions()['matmul_precision'] == 'default'
  assert provenance.library_versions()['matmul_precision'] == before
  with pytest.raises(ValueError, match='unknown matmul_precision .*tf32.*choose from'):
    matmul_precision_scope('tf32')


def test_matmul_precision_is_part_of_the_result_config():
  assert 'matmul_precision' in RESULT_FIELDS


@pytest.mark.parametrize(
  ('protocol', 'batch_size', 'precision'),
  [(protocols.BEARD, 256, 'highest'), (protocols.STANDARD, 250, 'default')],
)
def test_protocol_fills_the_fields_the_config_leaves_to_it(protocol, batch_size, precision):
  config = default.get_config()
  config.protocol = protocol.name
  resolved = with_protocol_defaults(config, protocol)
  assert (resolved.batch_size, resolved.matmul_precision) == (batch_size, precision)
  # The caller's config is left as it was.
  assert (config.batch_size, config.matmul_precision) == (0, '')


def test_explicit_batch_size_and_precision_win_over_the_protocol():
  config = beard.get_config()
  config.batch_size, config.matmul_precision = 64, 'default'
  resolved = with_protocol_defaults(config, protocols.BEARD)
  assert (resolved.batch_size, resolved.matmul_precision) == (64, 'default')

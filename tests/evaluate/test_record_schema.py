"""One record schema: what run.py writes, what RECORD_FIELDS says and CONTRACTS.md lists agree."""

import pathlib
import re

import numpy as np

from beard_jax.benchmark import run
from beard_jax.benchmark.plan import Cell, resolve_plan
from beard_jax.evaluate.results import RECORD_FIELDS
from beard_jax.evaluate.runner import AttackRun
from beard_jax.models.pool import ModelEntry
from configs import default

CONTRACTS = pathlib.Path(__file__).resolve().parents[2] / 'docs' / 'CONTRACTS.md'


def _written_record() -> dict:
  config = default.get_config()
  config.update({'model_pool': '.', 'attacks': 'fgsm'})
  plan = resolve_plan(config)
  n = 4
  outcome = AttackRun(
    clean_correct=np.ones(n, bool),
    adv_correct=np.zeros(n, bool),
    adv_pred=np.zeros(n, np.int32),
    adv_gap=np.ones(n, np.float32),
    label_in_top2=np.ones(n, bool),
    success=np.ones(n, bool),
    linf=np.full(n, 0.03, np.float32),
    l2=np.ones(n, np.float32),
    batch_seconds=np.array([0.5]),
    compile_seconds=1.0,
    targeted=False,
  )
  entry = ModelEntry('DC', 'cifar10', 10, 0, 'standard', 'pool/DC', 'checkpoint')
  hparams = dict(plan.hparams[('fgsm', False)])
  inputs = {'model_sha256': 'a', 'test_set_sha256': 'b'}
  return run._record(Cell(entry, 'fgsm', False), plan, outcome, hparams, inputs, {})


def test_run_writes_exactly_the_schema_fields():
  assert set(_written_record()) | {'config_hash'} == set(RECORD_FIELDS)


def test_contracts_md_lists_every_record_field():
  text = CONTRACTS.read_text()
  section = text[text.index('## Results records') : text.index('## Metric rows')]
  listed = set(re.findall(r'[a-z_0-9]+', section.split('```')[1]))
  assert set(RECORD_FIELDS) <= listed, sorted(set(RECORD_FIELDS) - listed)

"""The results store: durable appends, torn tails, config pinning."""

import json

import pytest

from beard_jax.evaluate.results import ResultStore, WorkdirConflictError, cell_key


def _record(attack, targeted=False, **extra):
  return dict(
    method='DC',
    dataset='cifar10',
    ipc=10,
    seed=0,
    protocol='standard',
    training='standard',
    attack=attack,
    targeted=targeted,
    robust_acc=1.0,
    **extra,
  )


def test_records_survive_a_reopen_and_cells_are_skipped(tmp_path):
  store = ResultStore(str(tmp_path), {'a': 1}, 'hash1')
  store.add(_record('clean'))
  store.add(_record('fgsm'))
  reopened = ResultStore(str(tmp_path), {'a': 1}, 'hash1')
  assert [r['attack'] for r in reopened.records] == ['clean', 'fgsm']
  assert reopened.is_done(cell_key(_record('fgsm')))
  assert not reopened.is_done(cell_key(_record('fgsm', targeted=True)))
  with pytest.raises(ValueError, match='already recorded'):
    reopened.add(_record('fgsm'))


def test_a_torn_last_line_is_dropped_and_overwritten(tmp_path):
  store = ResultStore(str(tmp_path), {}, 'h')
  store.add(_record('clean'))
  with open(tmp_path / 'results.jsonl', 'a') as f:
    f.write('{"method": "DC", "attack": "fg')  # A process killed mid-append.
  reopened = ResultStore(str(tmp_path), {}, 'h')
  assert len(reopened.records) == 1
  reopened.add(_record('fgsm'))
  lines = (tmp_path / 'results.jsonl').read_text().splitlines()
  assert [json.loads(line)['attack'] for line in lines] == ['clean', 'fgsm']


def test_another_config_is_refused(tmp_path):
  ResultStore(str(tmp_path), {'protocol': 'standard'}, 'hash-standard')
  with pytest.raises(WorkdirConflictError, match='another config'):
    ResultStore(str(tmp_path), {'protocol': 'beard'}, 'hash-beard')

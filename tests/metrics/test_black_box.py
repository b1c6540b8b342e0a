"""BEARD's black-box logs through our metrics: its query log and its transfer log.

Expected values: BEARD's own formulas (`Code/metrics/black_box/evaluate_metrics.py`,
after `convert_to_white_box.py` for transfer) on its published logs, worked by hand for
the query log: targeted C = 69.95, A = (50.29, 63.1), T0 = min(6.68, 4.84) = 4.84,
T = (36.8, 2570.94): RR = 100 (1 - (69.95 - 56.695) / (69.95 - 50.29)) = 32.58,
AE = 100 (1303.87 - 4.84) / (2570.94 - 4.84) = 50.62, CREI = 41.60.
"""

import pathlib

import pytest

from beard_jax.metrics import compute_metrics, parse_beard_log
from beard_jax.metrics.beard_log import BeardLogError, parse_beard_transfer_log
from beard_jax.metrics.transfer import transfer_metrics

PUBLISHED = pathlib.Path(__file__).resolve().parents[1] / 'data' / 'published'
QUERY = PUBLISHED / 'Query_BACON_ConvNet_CIFAR10_50_evaluation_log.txt'
TRANSFER = PUBLISHED / 'Transfer_BACON_ConvNet_CIFAR10_50_evaluation_log.txt'


def _by_mode(rows, **fields):
  return {
    r['targeted']: (round(r['rr'], 2), round(r['ae'], 2), round(r['crei'], 2))
    for r in rows
    if r['ipc'] != 'combined' and all(r[k] == v for k, v in fields.items())
  }


def test_the_query_log_reads_at_the_file_names_ipc_and_its_metrics_are_beards():
  records = parse_beard_log(QUERY)
  assert {r['ipc'] for r in records} == {50}  # Its lines say IPC 1; the model is IPC 50.
  attacked = {
    (r['attack'], r['targeted']): r['robust_acc'] for r in records if r['attack'] != 'clean'
  }
  assert attacked == {
    ('spsa', True): 50.29, ('spsa', False): 27.0, ('square', True): 63.1, ('square', False): 29.2,
  }  # fmt: skip
  # Targeted Square and SPSA count (BEARD's scripts drop only targeted DeepFool and AA).
  assert _by_mode(compute_metrics(records)) == {
    True: (32.58, 50.62, 41.6),
    False: (2.56, 85.6, 44.08),
  }


def test_the_transfer_log_gives_every_models_accuracy_and_beards_per_model_metrics():
  records = parse_beard_transfer_log(TRANSFER)
  models = {'DC', 'DSA', 'MTT', 'DM', 'IDM', 'BACON', 'ROME', 'VULCAN'}
  assert len(records) == 7 * 2 * len(models)  # 7 lines (Clean + 6 attacks), 2 modes.
  fgsm = {r['transfer_to'].split('/')[0]: r['robust_acc'] for r in records
          if r['attack'] == 'fgsm' and r['targeted']}  # fmt: skip
  assert fgsm['DC'] == pytest.approx(30.56) and fgsm['BACON'] == pytest.approx(44.68)
  rows = transfer_metrics(records)
  assert {r['source'] for r in rows} == {'BACON/ipc50/seed0/standard'}
  assert _by_mode(rows, method='DC') == {True: (15.98, 29.07, 22.53), False: (9.99, 21.29, 15.64)}
  assert _by_mode(rows, method='BACON') == {True: (7.0, 29.07, 18.04), False: (32.65, 21.29, 26.97)}
  assert _by_mode(rows, method='ROME') == {
    True: (34.91, 29.07, 31.99),
    False: (27.14, 21.29, 24.21),
  }
  # VULCAN scores higher under attack than clean: BEARD's formulas break, we say so.
  vulcan = [r for r in rows if r['method'] == 'VULCAN' and r['targeted']][0]
  assert round(vulcan['rr'], 2) == -265.52 and 'attack_above_clean' in vulcan['degenerate'][0]


def test_a_transfer_line_without_the_model_accuracies_is_refused(tmp_path):
  bad = tmp_path / 'x_50_evaluation_log.txt'
  line = QUERY.read_text().splitlines()[1]
  bad.write_text(line + '\n')
  with pytest.raises(BeardLogError, match='expected eval_accuracies_target and _non_target'):
    parse_beard_transfer_log(bad)

"""The side-by-side comparison with BEARD's published accuracies."""

import math
import pathlib

import pytest

from beard_jax.metrics import beard_log, compare

LOG = (
  pathlib.Path(__file__).parents[1] / 'data/published/BACON_ConvNet_CIFAR10_50_evaluation_log.txt'
)


def _record(attack, targeted, robust, n, ties=None):
  record = dict(method='BACON', dataset='cifar10', ipc=50, attack=attack, targeted=targeted,
                clean_acc=69.95, robust_acc=robust, num_examples=n)  # fmt: skip
  if ties is not None:
    count, low, high = ties
    record.update(boundary_examples=count, robust_acc_range=[low, high])
  return record


def test_wilson_interval_by_hand():
  # p = 0.5, n = 100: centre 0.5, half-width 1.96·sqrt(0.0025 + 1.96²/40000)/(1 + 1.96²/100).
  low, high = compare.wilson_interval(50.0, 100)
  z = compare.Z_95
  half = z * math.sqrt(0.25 / 100 + z * z / 40000) / (1 + z * z / 100)
  assert (low, high) == pytest.approx((100 * (0.5 - half), 100 * (0.5 + half)))
  assert (low, high) == pytest.approx((40.38, 59.62), abs=0.01)


def test_full_set_rows_must_match_to_two_decimals():
  published = beard_log.load_beard_logs([LOG])
  ours = [
    _record('clean', True, 69.95, 10000),
    _record('fgsm', True, 44.68, 10000),
    _record('pgd', False, 28.87, 10000),  # published 28.86
    _record('deepfool', False, 19.0, 500),  # published 18.28, interval about 15.8–22.6
    _record('cw', False, 20.0, 500),  # published 8.31: far outside
    _record('square', False, 50.0, 10000),  # not in the log: no row
  ]
  rows = {(r['attack'], r['mode']): r for r in compare.compare(ours, published)}
  assert set(rows) == {
    ('clean', 'targeted'),
    ('fgsm', 'targeted'),
    ('pgd', 'untargeted'),
    ('deepfool', 'untargeted'),
    ('cw', 'untargeted'),
  }
  assert rows['clean', 'targeted']['verdict'] == 'equal'
  assert rows['fgsm', 'targeted']['verdict'] == 'equal'
  assert rows['pgd', 'untargeted']['verdict'] == 'differs'
  assert rows['pgd', 'untargeted']['diff'] == pytest.approx(0.01)
  assert rows['pgd', 'untargeted']['images'] == 1
  assert rows['deepfool', 'untargeted']['verdict'] == 'within 95 %'
  assert rows['cw', 'untargeted']['verdict'] == 'outside 95 %'
  table = compare.markdown_table(list(rows.values()))
  assert '| BACON | 50 | fgsm | targeted | 44.68 | 10000 | – |' in table


def test_ties_widen_the_interval():
  published = beard_log.load_beard_logs([LOG])  # DeepFool untargeted: 18.28
  ours = [
    # Full set, 20.10 with 327 ties that could give 0–32.70: the published value is inside.
    _record('deepfool', False, 20.10, 10000, ties=(3270, 0.0, 32.70)),
    # Full set, ties that cannot reach it: 19.00–19.50.
    _record('deepfool', False, 19.10, 10000, ties=(50, 19.00, 19.50)),
    # Subset of 1,000 with ties spanning 19.5–25: Wilson low of 19.5 % at n=1000 is 17.16.
    _record('deepfool', False, 21.0, 1000, ties=(55, 19.5, 25.0)),
    # No ties recorded (an older record): the plain Wilson interval, 19.45–24.57 for 21.9.
    _record('deepfool', False, 21.9, 1000),
  ]
  rows = compare.compare(ours, published)
  by_value = {r['ours']: r for r in rows}
  assert by_value[20.10]['verdict'] == 'within tie range'
  assert (by_value[20.10]['low'], by_value[20.10]['high']) == (0.0, 32.70)
  assert by_value[20.10]['ties'] == 3270
  assert by_value[19.10]['verdict'] == 'differs'
  assert by_value[21.0]['verdict'] == 'within 95 %'
  assert by_value[21.0]['low'] == pytest.approx(compare.wilson_interval(19.5, 1000)[0])
  assert by_value[21.0]['high'] == pytest.approx(compare.wilson_interval(25.0, 1000)[1])
  assert by_value[21.9]['verdict'] == 'outside 95 %'
  assert by_value[21.9]['ties'] is None


def test_table_says_when_our_n_differs_from_the_published_n():
  published = beard_log.load_beard_logs([LOG])
  subset = [_record('fgsm', True, 44.0, 512), _record('pgd', False, 28.0, 512)]
  table = compare.markdown_table(compare.compare(subset, published))
  assert 'N 512 vs published 10000 in 2 row(s)' in table
  full = compare.markdown_table(compare.compare([_record('fgsm', True, 44.68, 10000)], published))
  assert 'vs published' not in full
  # One Markdown writer (a DataFrame's): numbers right-aligned, text left-aligned.
  assert '\n|---|---:|---|---|---:|---:|---:|---:|---:|---:|---|\n' in table


def test_transfer_records_meet_the_transfer_logs_per_model_accuracies():
  log = LOG.parent / 'Transfer_BACON_ConvNet_CIFAR10_50_evaluation_log.txt'
  published = beard_log.parse_beard_transfer_log(log)
  ours = [
    dict(_record('fgsm', True, 30.56, 10000), transfer_to='DC/ipc50/seed0/standard'),
    dict(_record('fgsm', True, 30.0, 10000), transfer_to='DM/ipc50/seed0/standard'),
    _record('fgsm', True, 44.68, 10000),  # White-box: the transfer log has no such row.
  ]
  rows = compare.compare(ours, published)
  assert [(r['scored_on'], r['published'], r['verdict']) for r in rows] == [
    ('DC', pytest.approx(30.56), 'equal'),
    ('DM', pytest.approx(41.19), 'differs'),
  ]
  assert '| scored on |' in compare.markdown_table(rows)

"""The side-by-side comparison with BEARD's published accuracies."""

import math
import pathlib

import pytest

from beard_jax.metrics import beard_log, compare

LOG = (
  pathlib.Path(__file__).parents[1] / 'data/published/BACON_ConvNet_CIFAR10_50_evaluation_log.txt'
)


def _record(attack, targeted, robust, n):
  return dict(method='BACON', dataset='cifar10', ipc=50, attack=attack, targeted=targeted,
              clean_acc=69.95, robust_acc=robust, num_examples=n)  # fmt: skip


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
  assert '| BACON | 50 | fgsm | targeted | 44.68 | 10000 |' in table

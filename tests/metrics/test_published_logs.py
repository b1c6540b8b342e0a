"""BEARD's published BACON logs through our importer and metrics: the toolkit's published output.

The expected values are the example output printed in BEARD's
`Code/metrics/white_box/README.md` for these three logs (its "ipc_50" example
block holds the IPC-1 row; the combined row is over IPC 1, 10 and 50).
"""

import json
import pathlib
import subprocess
import sys

import pytest

PUBLISHED = pathlib.Path(__file__).resolve().parent.parent / 'data' / 'published'
LOGS = [PUBLISHED / f'BACON_ConvNet_CIFAR10_{ipc}_evaluation_log.txt' for ipc in (1, 10, 50)]


@pytest.fixture(scope='module')
def results():
  completed = subprocess.run(
    [sys.executable, '-m', 'beard_jax.metrics', '--beard_logs=' + ','.join(map(str, LOGS))],
    capture_output=True,
    text=True,
    check=True,
  )
  rows = json.loads(completed.stdout)['results']
  return {(r['ipc'], r['mode']): r for r in rows if r['adversary'] == 'all'}


def test_combined_targeted_matches_published_toolkit_output(results):
  row = results[('combined', 'targeted')]
  assert (row['RR'], row['AE'], row['CREI']) == (36.83, 29.83, 33.33)


def test_ipc1_targeted_matches_published_toolkit_output(results):
  row = results[(1, 'targeted')]
  assert (row['RR'], row['AE'], row['CREI']) == (19.78, 29.7, 24.74)


def test_targeted_rows_drop_deepfool_and_autoattack(results):
  assert sorted(results[(50, 'targeted')]['attacks']) == ['cw', 'fgsm', 'pgd', 'pgd_l2']
  assert sorted(results[(50, 'untargeted')]['attacks']) == [
    'aa',
    'cw',
    'deepfool',
    'fgsm',
    'pgd',
    'pgd_l2',
  ]

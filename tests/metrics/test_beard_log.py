"""The BEARD log importer and CLI, on small logs written here in the published format."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from beard_jax.metrics import (
  BeardLogError,
  compute_metrics,
  load_beard_logs,
  parse_beard_log,
  parse_result_line,
)

REPO = pathlib.Path(__file__).resolve().parents[2]
TAIL = (
  'DSA:True, num_eval: 1, aug:None , model: ConvNet, attack_type: None, target_attack: False,'
  " src_dataset: None, eval_accuracies_target: {[{'acc': 0.4}]}, eval_accuracies_non_target:"
  " {[{'acc': 0.4}]}"
)
PREFIX = '2024-05-01 12:00:00,123 - INFO - '
# IPC 1: C = 40, T0 = 2.0 (targeted) / 1.5 (untargeted). Spacing, integers, exponents vary.
LOG_IPC1 = f"""{PREFIX}Evaluating DM on CIFAR10 (this line is ignored)
{PREFIX}Clean attack on DM: final acc is:  target_attack: 40.00 +- 0.00, attack time is 2.00; non_target_attack: 40.00 +- 0.00, attack time is 1.50, dataset: CIFAR10, IPC: 1, {TAIL}
{PREFIX}FGSM attack on DM: final acc is:  target_attack: 30 +- 1.5e-3, attack time is 3; non_target_attack: 20 +- 0, attack time is 3.5, dataset: CIFAR10, IPC: 1, {TAIL}
{PREFIX}PGD  attack on DM:  final acc is: target_attack:25.0 +-0.00,attack time is 6.0 ;non_target_attack: 10 +- 0.00, attack time is 55e-1, dataset:CIFAR10, IPC:1
{PREFIX}Deepfool attack on DM: final acc is:  target_attack: 40.00 +- 0.00, attack time is 1.00; non_target_attack: 30.00 +- 0.00, attack time is 9.50, dataset: CIFAR10, IPC: 1, {TAIL}
{PREFIX}AA attack on DM: final acc is:  target_attack: 40.00 +- 0.00, attack time is 5e-1; non_target_attack: 5.00 +- 0.00, attack time is 21.50, dataset: CIFAR10, IPC: 1, {TAIL}
"""  # noqa: E501
# IPC 10: C = 60, T0 = 4.0 / 3.0; the clean pass spelled 'No'.
LOG_IPC10 = """No attack on DM: final acc is:  target_attack: 60 +- 0.00, attack time is 4; non_target_attack: 60 +- 0.00, attack time is 3, dataset: CIFAR10, IPC: 10
FGSM attack on DM: final acc is:  target_attack: 50 +- 0.00, attack time is 6; non_target_attack: 30 +- 0.00, attack time is 5, dataset: CIFAR10, IPC: 10
PGD attack on DM: final acc is:  target_attack: 45 +- 0.00, attack time is 8; non_target_attack: 20 +- 0.00, attack time is 7, dataset: CIFAR10, IPC: 10
"""  # noqa: E501


@pytest.fixture
def logs(tmp_path):
  paths = []
  for name, text in (('ipc1.txt', LOG_IPC1), ('ipc10.txt', LOG_IPC10)):
    path = tmp_path / name
    path.write_text(text)
    paths.append(str(path))
  return paths


def pick(rows, ipc, targeted):
  (row,) = [r for r in rows if r['ipc'] == ipc and r['targeted'] == targeted]
  return row


def test_parse_line_fields():
  line = LOG_IPC1.splitlines()[2]
  result = parse_result_line(line)
  assert result['attack'] == 'fgsm' and result['method'] == 'DM'
  assert result['dataset'] == 'cifar10' and result['ipc'] == 1
  assert result['targeted'] == {'acc': 30.0, 'std': 1.5e-3, 'seconds': 3.0}
  assert result['untargeted'] == {'acc': 20.0, 'std': 0.0, 'seconds': 3.5}
  assert parse_result_line('Epoch 3 loss 1.2') is None


@pytest.mark.parametrize('spelling', ['Clean', 'clean', 'No', 'None', 'Natural', 'NoAttack'])
def test_clean_spellings(spelling):
  line = LOG_IPC10.splitlines()[0].replace('No attack', f'{spelling} attack')
  assert parse_result_line(line)['attack'] == 'clean'


def test_records_follow_the_contract(logs):
  records = parse_beard_log(logs[0])
  assert len(records) == 10  # five lines, two modes each
  fgsm = [r for r in records if r['attack'] == 'fgsm' and not r['targeted']][0]
  assert fgsm['robust_acc'] == 20.0 and fgsm['attack_seconds'] == 3.5
  assert fgsm['clean_acc'] == 40.0 and fgsm['seed'] == 0
  assert fgsm['protocol'] == 'beard' and fgsm['training'] == 'standard'
  assert fgsm['source'].endswith('ipc1.txt:3')
  assert {r['attack'] for r in records} == {'clean', 'fgsm', 'pgd', 'deepfool', 'aa'}


def test_metrics_from_logs_by_hand(logs):
  rows = compute_metrics(load_beard_logs(logs))
  row = pick(rows, 1, False)
  # a = [5, 30, 20, 10], C = 40 -> 100*(16.25-5)/35 = 225/7; T0 = min(2, 1.5) = 1.5,
  # t = [21.5, 9.5, 3.5, 5.5] -> 100*(10-1.5)/20 = 42.5
  assert row['rr'] == pytest.approx(225 / 7) and row['ae'] == pytest.approx(42.5)
  row = pick(rows, 1, True)
  # DeepFool and AA dropped: a = [30, 25] -> 100*2.5/15 = 50/3; t = [3, 6] -> 100*3/4.5 = 200/3
  assert row['attacks'] == ['fgsm', 'pgd']
  assert row['rr'] == pytest.approx(50 / 3) and row['ae'] == pytest.approx(200 / 3)
  row = pick(rows, 10, True)
  # C = 60, a = [50, 45] -> 100*2.5/15 = 50/3; T0 = 3, t = [6, 8] -> 100*(7-3)/(8-3) = 80
  assert row['rr'] == pytest.approx(50 / 3) and row['ae'] == pytest.approx(80.0)
  row = pick(rows, 'combined', False)
  # C = 50, a = [5,30,20,10,30,20] -> 100*(115/6-5)/45 = 8500/270; T0 = 2.25 -> AE = 100/3
  assert row['rr'] == pytest.approx(8500 / 270) and row['ae'] == pytest.approx(100 / 3)
  row = pick(rows, 'combined', True)
  # C = 50, a = [30,25,50,45]: mean 37.5, min 25 -> 100*12.5/25 = 50
  # T0 = 2.25, t = [3,6,6,8]: mean 5.75 -> 100*(5.75-2.25)/(8-2.25) = 350/5.75 = 1400/23
  assert row['rr'] == pytest.approx(50.0) and row['ae'] == pytest.approx(1400 / 23)
  assert row['crei'] == pytest.approx((50.0 + 1400 / 23) / 2)


@pytest.mark.parametrize(
  'line, expected',
  [
    (
      'PGD attack on DM: final acc is:  target_attack: 25 +- , attack time is 6; '
      'non_target_attack: 10 +- 0, attack time is 5, dataset: CIFAR10, IPC: 1',
      "expected '+- <std>,'",
    ),
    (
      'PGD attack on DM: final acc is:  target_attack: 25 +- 0, attack time is 6; '
      'non_target_attack: 10 +- 0, attack time is 5, dataset: CIFAR10',
      "expected ', IPC: <integer>'",
    ),
    ('Done, final acc is: 0.3', "expected '<Attack> attack on <Method>:'"),
    (
      'PGD attack on DM: final acc is:  target_attack: 25 +- 0, attack time is 6, '
      'non_target_attack: 10 +- 0, attack time is 5, dataset: CIFAR10, IPC: 1',
      "expected 'attack time is <sec>;'",
    ),
    (
      'PGD attack on DM: final acc is:  target_attack: n/a +- 0, attack time is 6; '
      'non_target_attack: 10 +- 0, attack time is 5, dataset: CIFAR10, IPC: 1',
      "expected 'target_attack: <acc>'",
    ),
  ],
)
def test_malformed_line_names_file_line_and_expectation(tmp_path, line, expected):
  path = tmp_path / 'bad.txt'
  path.write_text(LOG_IPC10.splitlines()[0] + '\nnoise\n' + line + '\n')
  with pytest.raises(BeardLogError) as info:
    parse_beard_log(path)
  assert f'{path}:3: ' in str(info.value) and expected in str(info.value)


def test_duplicate_result_across_files(logs, tmp_path):
  copy = tmp_path / 'again.txt'
  copy.write_text(LOG_IPC10)
  with pytest.raises(BeardLogError, match=r'again\.txt:1: same result as .*ipc10\.txt:1'):
    load_beard_logs([*logs, str(copy)])


def run_cli(*args):
  env = {**os.environ, 'PYTHONPATH': str(REPO)}
  return subprocess.run(
    [sys.executable, '-m', 'beard_jax.metrics', *args],
    capture_output=True,
    text=True,
    env=env,
    cwd=REPO,
    timeout=120,
  )


def test_cli_prints_rounded_json(logs):
  done = run_cli(f'--beard_logs={",".join(logs)}', '--clean_time=paper', '--alpha=0.7')
  assert done.returncode == 0, done.stderr
  output = json.loads(done.stdout)
  assert output['settings']['clean_time'] == 'paper' and output['settings']['alpha'] == 0.7
  results = {(r['ipc'], r['mode']): r for r in output['results']}
  assert set(results) == {
    (ipc, mode) for ipc in (1, 10, 'combined') for mode in ('targeted', 'untargeted')
  }
  row = results[(1, 'targeted')]
  # paper T0 = 2.0: t = [3, 6] -> AE = 100*(4.5-2)/(6-2) = 62.5; RR = 50/3
  # CREI = 0.7*50/3 + 0.3*62.5 = 11.666.. + 18.75 = 30.41666..
  assert row['RR'] == round(50 / 3, 2) == 16.67
  assert row['AE'] == 62.5
  assert row['CREI'] == round(0.7 * 50 / 3 + 0.3 * 62.5, 2) == 30.42
  assert results[(1, 'untargeted')]['RR'] == 32.14


def test_cli_reports_malformed_line(tmp_path):
  path = tmp_path / 'bad.txt'
  path.write_text('FGSM attack on DM: final acc is: target_attack: 3 +- 0, attack time 1\n')
  done = run_cli(f'--beard_logs={path}')
  assert done.returncode == 1
  assert f'{path}:1: expected' in done.stderr

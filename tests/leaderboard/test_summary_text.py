"""The terminal summary table and report.md's tables (beard_jax.benchmark.report)."""

import pandas as pd

from beard_jax.benchmark.report import SUMMARY_WIDTH, render_report, summary_text
from beard_jax.metrics import compute_metrics, summarize
from beard_jax.metrics.tables import frame_to_markdown

ATTACKS = ('fgsm', 'pgd', 'pgd_l2', 'cw', 'deepfool', 'autoattack')


def records(method, clean, *, seeds=(0, 1), ipc=10):
  """Both modes, six attacks; accuracy drops 5 points per attack, seed s adds s points."""
  out = []
  for seed in seeds:
    base = dict(method=method, dataset='cifar10', ipc=ipc, seed=seed, protocol='beard',
                training='standard', num_examples=512)  # fmt: skip
    for targeted in (False, True):
      c = clean + seed if clean else 0.0
      out.append({**base, 'attack': 'clean', 'targeted': targeted, 'clean_acc': c,
                  'robust_acc': c, 'attack_seconds': 1.0})  # fmt: skip
      for k, attack in enumerate(ATTACKS):
        acc = max(c - 5.0 * (k + 1), 0.0)
        out.append({**base, 'attack': attack, 'targeted': targeted, 'robust_acc': acc,
                    'attack_seconds': 2.0 + k})  # fmt: skip
  return out


RECORDS = records('DM', 40.0) + records('MTT', 50.0, seeds=(0,), ipc=1) + records('ZERO', 0.0)


def test_summary_text_one_line_per_model_and_mode():
  text = summary_text(RECORDS)
  lines = text.splitlines()
  assert max(len(line) for line in lines) <= SUMMARY_WIDTH
  assert lines[0] == 'cifar10 · untargeted · standard training · beard protocol (%)'
  assert lines[1].split() == [
    'method', 'IPC', 'seeds', 'clean', 'FGSM', 'PGD', 'PGD-L2', 'C&W', 'DeepFool',
    'AutoAttack', 'CREI',
  ]  # fmt: skip
  # DM, two seeds: clean 40 and 41 -> 40.5 ± 0.5 (one decimal keeps six attacks in 100 columns).
  dm = next(line for line in lines[2:5] if line.split()[0] == 'DM').split()
  assert dm[:5] == ['DM', '10', '2', '40.5±0.5', '35.5±0.5']
  mtt = next(line for line in lines[2:5] if line.split()[0] == 'MTT').split()
  assert mtt[:4] == ['MTT', '1', '1', '50.0']  # one seed: no std
  zero = next(line for line in lines[2:5] if line.split()[0] == 'ZERO').split()
  assert zero[-1].endswith('*')
  # Targeted rows leave out DeepFool and AA: fewer columns, so two decimals fit.
  start = lines.index('cifar10 · targeted · standard training · beard protocol (%)')
  assert lines[start + 1].split() == ['method', 'IPC', 'seeds', 'clean', 'FGSM', 'PGD',
                                      'PGD-L2', 'C&W', 'CREI']  # fmt: skip
  assert '40.50±0.50' in text
  assert '* not ranked: ZERO IPC 10 untargeted: clean_at_chance, clean_equals_min_acc' in lines
  # Metric rows give the same table; nothing gives 'no results'.
  assert summary_text(compute_metrics(RECORDS, adversaries='both')) == text
  assert summary_text([]) == 'no results'


def test_report_tables_come_from_dataframes():
  config = dict(dataset='cifar10', ipc=10, protocol='beard', seed=0, seeds=2, batch_size=256,
                metrics_type='beard', alpha=0.5, clean_time='toolkit')  # fmt: skip
  rows = compute_metrics(RECORDS)
  report = render_report(config, RECORDS, summarize(rows), [], summary_text(rows))
  assert '## Summary\n\n```\ncifar10 · untargeted' in report
  # Text columns left-aligned, numbers right-aligned, by the shared DataFrame writer.
  assert '|---|---:|---:|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|' in report
  frame = pd.DataFrame({'method': ['a|b'], 'acc': ['1.00']})
  assert frame_to_markdown(frame, left=['method']) == (
    '| method | acc |\n|---|---:|\n| a\\|b | 1.00 |'
  )

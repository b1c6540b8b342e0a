"""After the cells: metric rows, leaderboards and a human-readable `report.md`."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from beard_jax.io.atomic import atomic_write_text
from beard_jax.leaderboard import write_leaderboards
from beard_jax.metrics import compute_metrics, summarize

_RECORD_COLUMNS = (
  ('method', 'method'),
  ('ipc', 'IPC'),
  ('seed', 'seed'),
  ('training', 'training'),
  ('attack', 'attack'),
  ('targeted', 'mode'),
  ('clean_acc', 'clean %'),
  ('robust_acc', 'robust %'),
  ('robust_acc_range', 'robust % if ties flip'),
  ('asr', 'ASR %'),
  ('ast', 'AST s'),
  ('attack_seconds', 'pass s'),
  ('compile_seconds', 'compile s'),
)
_METRIC_COLUMNS = (
  'method',
  'ipc',
  'mode',
  'RR',
  'AE',
  'CREI',
  'clean_acc',
  'worst_robust_acc',
  'worst_attack',
  'num_seeds',
  'degenerate',
)


def _cell(key: str, value: Any) -> str:
  if key == 'targeted':
    return 'targeted' if value else 'untargeted'
  if isinstance(value, float):
    return f'{value:.2f}'
  if key == 'robust_acc_range':
    return '–' if value is None else f'{value[0]:.2f}–{value[1]:.2f}'
  if isinstance(value, list):
    return ', '.join(map(str, value)) or '–'
  return '–' if value is None else str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  lines = ['| ' + ' | '.join(headers) + ' |', '|' + '---|' * len(headers)]
  lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
  return '\n'.join(lines)


def render_report(
  config: Mapping[str, Any],
  records: Sequence[Mapping],
  summary: Sequence[Mapping],
  leaderboard_files: Sequence[str],
) -> str:
  """`report.md`: what ran, every record, the metric summary, where the boards are."""
  versions = records[0].get('versions', {}) if records else {}
  parts = [
    f'# BEARD-JAX report: {config["dataset"]} IPC {config["ipc"]}, protocol {config["protocol"]}',
    '',
    f'Seed {config["seed"]}, {config["seeds"]} model seed(s), '
    f'{records[0]["num_examples"] if records else 0} test examples, batch {config["batch_size"]}, '
    f'metrics `{config["metrics_type"]}` (alpha {config["alpha"]}, clean time '
    f'`{config["clean_time"]}`).',
    '',
    'Versions: ' + ', '.join(f'{k} {v}' for k, v in sorted(versions.items())),
    '',
    '## Records',
    '',
    _table(
      [h for _, h in _RECORD_COLUMNS],
      [[_cell(k, r.get(k)) for k, _ in _RECORD_COLUMNS] for r in records],
    ),
    '',
    '## Metrics (all attacks of a mode)',
    '',
    _table(
      _METRIC_COLUMNS,
      [
        [_cell(k, row.get(k)) for k in _METRIC_COLUMNS]
        for row in summary
        if row['adversary'] == 'all'
      ],
    ),
    '',
    '## Leaderboards and figures',
    '',
    *[
      f'- [{os.path.basename(path)}](leaderboards/{os.path.basename(path)})'
      for path in leaderboard_files
    ],
    '',
  ]
  return '\n'.join(parts)


def write_outputs(config, records: Sequence[Mapping]) -> dict[str, str]:
  """Computes metrics from `records` and writes boards, `metrics.json` and `report.md`.

  Returns:
    Paths by kind: `report`, `metrics`, `leaderboards` (the directory).
  """
  rows = compute_metrics(
    records,
    metrics_type=config.metrics_type,
    alpha=config.alpha,
    clean_time=config.clean_time,
    adversaries='both',
  )
  summary = summarize(rows)
  out_dir = os.path.join(config.workdir, 'leaderboards')
  files = write_leaderboards([r for r in rows if r['adversary'] == 'all'], out_dir)
  metrics_path = os.path.join(config.workdir, 'metrics.json')
  atomic_write_text(metrics_path, json.dumps(summary, indent=2))
  report_path = os.path.join(config.workdir, 'report.md')
  atomic_write_text(report_path, render_report(config, records, summary, files))
  return {'report': report_path, 'metrics': metrics_path, 'leaderboards': out_dir}

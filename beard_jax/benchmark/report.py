"""After the cells: metric rows, leaderboards, a human-readable `report.md`, and the terminal
summary table (`summary_text`)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from beard_jax.io.atomic import atomic_write_text
from beard_jax.leaderboard import write_leaderboards
from beard_jax.leaderboard.boards import attack_title, make_entry, order_attacks
from beard_jax.leaderboard.curves import area_frame, write_curves
from beard_jax.leaderboard.transfer import transfer_frame, transfer_markdown, write_transfer
from beard_jax.metrics import compute_metrics, summarize, summary_row
from beard_jax.metrics.tables import frame_to_markdown, mean_std_text, number_text
from beard_jax.metrics.transfer import transfer_metrics

_RECORD_COLUMNS = (
  ('method', 'method'),
  ('ipc', 'IPC'),
  ('seed', 'seed'),
  ('training', 'training'),
  ('attack', 'attack'),
  ('sweep', 'sweep point'),
  ('targeted', 'mode'),
  ('clean_acc', 'clean %'),
  ('robust_acc', 'robust %'),
  ('robust_acc_range', 'robust % if ties flip'),
  ('asr', 'ASR %'),
  ('ast', 'AST s'),
  ('attack_seconds', 'pass s'),
  ('compile_seconds', 'compile s'),
)
_TEXT_COLUMNS = (
  'method',
  'training',
  'attack',
  'sweep point',
  'mode',
  'worst_attack',
  'degenerate',
)
SUMMARY_WIDTH = 100
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
  frame = pd.DataFrame(list(rows), columns=list(headers))
  return frame_to_markdown(frame, left=[h for h in headers if h in _TEXT_COLUMNS])


def _summary_rows(records_or_rows: Sequence[Mapping], settings: Mapping[str, Any]) -> list[Mapping]:
  """Per-IPC multi-adversary metric rows: given, or computed from records."""
  items = list(records_or_rows)
  if items and 'adversary' not in items[0]:
    items = compute_metrics(items, **settings)
  return [r for r in items if r['adversary'] == 'all' and r['ipc'] != 'combined']


def _summary_frame(rows: Sequence[Mapping], digits: int, with_std: bool) -> pd.DataFrame:
  """method, IPC, seeds, clean, robust accuracy per attack, CREI ('*': not ranked)."""
  attacks = order_attacks(a for r in rows for a in r['attacks'])
  lines = []
  for row in rows:
    entry = make_entry(row)
    values = {'clean': ('clean_acc', entry.clean_acc)}
    for attack in attacks:
      values[attack_title(attack)] = (f'robust_acc/{attack}', entry.robust_accs.get(attack))
    values['CREI'] = ('crei', entry.crei)
    line = {'method': entry.method, 'IPC': str(row['ipc']), 'seeds': str(entry.num_seeds)}
    for column, (key, value) in values.items():
      std = entry.std(key) if with_std else None
      line[column] = mean_std_text(value, std, digits, sep='±')
    if entry.unranked_reasons:
      line['CREI'] += '*'
    lines.append(line)
  return pd.DataFrame(lines)


def summary_text(
  records_or_rows: Sequence[Mapping],
  *,
  metrics_type: str = 'beard',
  alpha: float = 0.5,
  clean_time: str = 'toolkit',
) -> str:
  """A plain-text summary table for the terminal, one line per model and mode.

  Args:
    records_or_rows: results records (CONTRACTS.md), or metric rows from
      `compute_metrics` (recognised by their `adversary` field).
    metrics_type: RR variant, used only when records are given.
    alpha: CREI weight of RR, used only when records are given.
    clean_time: T0 rule, used only when records are given.

  Returns:
    A block per (dataset, protocol, training, mode): a heading line, then columns method,
    IPC, seeds, clean (clean accuracy %), robust accuracy % under each attack, CREI:
    means over seeds ± population std across seeds, two decimals. Where that makes a line
    wider than `SUMMARY_WIDTH` characters, one decimal; where that is still too wide, two
    decimals without the std. A CREI marked '*' is not ranked; the lines at the end say
    why. 'no results' when there is nothing to show.
  """
  settings = {'metrics_type': metrics_type, 'alpha': alpha, 'clean_time': clean_time}
  rows = _summary_rows(records_or_rows, settings)
  if not rows:
    return 'no results'
  groups: dict[tuple, list[Mapping]] = {}
  for row in rows:
    key = (row['dataset'], row['protocol'], row['training'], row['targeted'])
    groups.setdefault(key, []).append(row)
  blocks = [_summary_block(key, group) for key, group in groups.items()]
  notes = [
    f'* not ranked: {r["method"]} IPC {r["ipc"]} {"targeted" if r["targeted"] else "untargeted"}: '
    + ', '.join(n.split(':')[0] for n in make_entry(r).unranked_reasons)
    for r in rows
    if make_entry(r).unranked_reasons
  ]
  return '\n\n'.join(blocks) + ('\n' + '\n'.join(notes) if notes else '')


def _summary_block(key: tuple, rows: Sequence[Mapping]) -> str:
  dataset, protocol, training, targeted = key
  mode = 'targeted' if targeted else 'untargeted'
  heading = f'{dataset} · {mode} · {training} training · {protocol} protocol (%)'
  for digits, with_std in ((2, True), (1, True), (2, False)):
    table = _summary_frame(rows, digits, with_std).to_string(index=False)
    if max(len(line) for line in table.splitlines()) <= SUMMARY_WIDTH:
      break
  return heading + '\n' + table


def render_report(
  config: Mapping[str, Any],
  records: Sequence[Mapping],
  summary: Sequence[Mapping],
  leaderboard_files: Sequence[str],
  overview: str = '',
  transfer_rows: Sequence[Mapping] = (),
) -> str:
  """`report.md`: what ran, `overview` (`summary_text`), every record, the metric summary,
  the curves and transfer sections (`transfer_rows`: `transfer_metrics` rows), where the
  boards are."""
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
    '## Summary',
    '',
    '```',
    overview or 'no results',
    '```',
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
    *_curves_section(records),
    *_transfer_section(records, transfer_rows),
    '## Leaderboards and figures',
    '',
    *[
      f'- [{os.path.basename(path)}](leaderboards/{os.path.basename(path)})'
      for path in leaderboard_files
    ],
    '',
  ]
  return '\n'.join(parts)


def _curves_section(records: Sequence[Mapping]) -> list[str]:
  """`## Curves`: each `--sweep` curve's normalised area (mean robust accuracy over the
  swept range), or nothing without sweep records."""
  areas = area_frame(records)
  if areas.empty:
    return []
  areas['area'] = [
    mean_std_text(a, s if n > 1 else None)
    for a, s, n in zip(areas['area'], areas['area_std'], areas['seeds'], strict=True)
  ]
  columns = ['method', 'ipc', 'training', 'attack', 'mode', 'hparam', 'range', 'points', 'area']
  return [
    '## Curves (`--sweep`)',
    '',
    'Area: the area under robust accuracy against the swept value divided by the range '
    '(the mean robust accuracy over it, %), per seed, then mean ± std over seeds. Points: '
    '`leaderboards/curves.csv`; figure: `leaderboards/curves.png`.',
    '',
    frame_to_markdown(areas[columns].rename(columns={'area': 'area %'})),
    '',
  ]


def _transfer_section(records: Sequence[Mapping], rows: Sequence[Mapping]) -> list[str]:
  """`## Transfer`: the source × target matrices and the per-target metrics `rows`
  (`transfer_metrics`), or nothing without transfer records."""
  frame = transfer_frame(records)
  if frame.empty:
    return []
  columns = ['source', 'method', 'ipc', 'mode', 'rr', 'ae', 'crei']
  table = pd.DataFrame(
    [
      {**{k: row[k] for k in ('source', 'method', 'ipc')}, 'mode': _mode(row),
       **{k: number_text(row[k]) for k in ('rr', 'ae', 'crei')}}
      for row in rows
      if row['ipc'] != 'combined' and row['adversary'] == 'all'
    ],
    columns=columns,
  )  # fmt: skip
  return [
    '## Transfer (`--transfer`)',
    '',
    'Robust accuracy of each target model (columns) on the adversarials crafted on each '
    'source model (rows), averaged over seed pairs; the diagonal is white-box. Values: '
    '`leaderboards/transfer.csv`; heatmaps: `leaderboards/transfer_*.png`.',
    '',
    *transfer_markdown(frame),
    "Per target, as BEARD's black-box scripts compute them (the target's accuracies, the "
    "source's times: `beard_jax.metrics.transfer`); `leaderboards/transfer_metrics.csv`:",
    '',
    frame_to_markdown(table.rename(columns={'method': 'scored on'})),
    '',
  ]


def _mode(row: Mapping) -> str:
  return 'targeted' if row['targeted'] else 'untargeted'


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
  extra = write_curves(records, out_dir) + write_transfer(records, out_dir)
  figures = [path for path in extra if path.endswith('.png')]
  files = write_leaderboards([r for r in rows if r['adversary'] == 'all'], out_dir, figures)
  files += extra
  transfer_rows = transfer_metrics(
    records, metrics_type=config.metrics_type, alpha=config.alpha, clean_time=config.clean_time
  )
  if transfer_rows:
    path = os.path.join(out_dir, 'transfer_metrics.csv')
    table = [{'source': row['source'], **summary_row(row)} for row in transfer_rows]
    atomic_write_text(path, pd.DataFrame(table).to_csv(index=False))
    files.append(path)
  metrics_path = os.path.join(config.workdir, 'metrics.json')
  atomic_write_text(metrics_path, json.dumps(summary, indent=2))
  report_path = os.path.join(config.workdir, 'report.md')
  overview = summary_text(rows)
  report = render_report(config, records, summary, files, overview, transfer_rows)
  atomic_write_text(report_path, report)
  return {'report': report_path, 'metrics': metrics_path, 'leaderboards': out_dir}

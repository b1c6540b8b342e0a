"""Writes every leaderboard and figure of a set of metric rows into one directory."""

from __future__ import annotations

import json
import math
import os
import pathlib
from collections.abc import Iterable, Mapping, Sequence

from beard_jax.leaderboard import boards as boards_lib
from beard_jax.leaderboard import plots, render


def _json_safe(value):
  if isinstance(value, float) and math.isnan(value):
    return None
  if isinstance(value, list):
    return [_json_safe(v) for v in value]
  if isinstance(value, dict):
    return {k: _json_safe(v) for k, v in value.items()}
  return value


def write_leaderboards(
  rows: Iterable[Mapping], out_dir: str | os.PathLike, extra_figures: Sequence[str] = ()
) -> list[str]:
  """Writes boards (Markdown, CSV, HTML), the rows as JSON and the figures.

  Args:
    rows: metric rows from `beard_jax.metrics.compute_metrics`.
    out_dir: created if needed; files of the same names are overwritten.
    extra_figures: PNGs written elsewhere (curves, transfer heatmaps) that the HTML page
      embeds after its own figures (not in the returned paths).

  Returns:
    Paths written: `leaderboards.md`, `leaderboards.csv`, `leaderboards.html`,
    `metric_rows.json` (full precision), then PNGs per protocol and mode:
    `robust_accuracy_<protocol>_<mode>_<training>.png`,
    `metrics_<protocol>_<mode>_<training>.png`, `crei_vs_ipc_<protocol>_<mode>_<training>.png`
    and `adversarial_training_<protocol>_<mode>.png` (those with data only).
  """
  rows = list(rows)
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  boards = boards_lib.build_boards(rows)
  accuracy = boards_lib.build_accuracy_tables(rows)
  missing = boards_lib.missing_published_boards(boards)

  figures = []
  cells = sorted(
    {(r['protocol'], r['targeted'], r['training']) for r in rows},
    key=lambda c: (str(c[0]), c[1], c[2] != 'standard', str(c[2])),
  )
  for protocol, targeted, training in cells:
    mode = 'targeted' if targeted else 'untargeted'
    select = {'protocol': protocol, 'training': training, 'targeted': targeted}
    path = out / f'robust_accuracy_{protocol}_{mode}_{training}.png'
    figures.append(plots.plot_robust_accuracy(rows, path, **select))
    figures.append(
      plots.plot_metric_bars(rows, out / f'metrics_{protocol}_{mode}_{training}.png', **select)
    )
    figures.append(
      plots.plot_crei_vs_ipc(rows, out / f'crei_vs_ipc_{protocol}_{mode}_{training}.png', **select)
    )
  for protocol, targeted in sorted({(p, t) for p, t, _ in cells}, key=str):
    mode = 'targeted' if targeted else 'untargeted'
    path = out / f'adversarial_training_{protocol}_{mode}.png'
    figures.append(plots.plot_training_comparison(rows, path, protocol=protocol, targeted=targeted))
  figures = [f for f in figures if f is not None]

  paths = [out / 'leaderboards.md', out / 'leaderboards.csv', out / 'leaderboards.html']
  paths[0].write_text(render.to_markdown(boards, missing, accuracy), encoding='utf-8')
  paths[1].write_text(render.to_csv(boards), encoding='utf-8')
  embedded = [
    (pathlib.Path(f).stem.replace('_', ' '), pathlib.Path(f).read_bytes())
    for f in [*figures, *extra_figures]
  ]
  page = render.to_html(boards, missing, embedded, accuracy=accuracy)
  paths[2].write_text(page, encoding='utf-8')
  rows_path = out / 'metric_rows.json'
  safe = [{k: _json_safe(v) for k, v in r.items()} for r in rows]
  rows_path.write_text(json.dumps(safe, indent=1, allow_nan=False), encoding='utf-8')
  return [str(p) for p in (*paths, rows_path)] + figures

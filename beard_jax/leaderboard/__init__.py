"""Leaderboards of BEARD metric rows: ranking, Markdown/CSV/HTML rendering, figures."""

from beard_jax.leaderboard.boards import (
  BASELINE_METHODS,
  BOARD_IPCS,
  DATASETS,
  UNRANKED_CODES,
  AccuracyTable,
  Board,
  Entry,
  ModelLine,
  build_accuracy_tables,
  build_boards,
  is_baseline,
  missing_published_boards,
  rank_rows,
)
from beard_jax.leaderboard.plots import (
  plot_crei_vs_ipc,
  plot_metric_bars,
  plot_robust_accuracy,
  plot_training_comparison,
)
from beard_jax.leaderboard.render import to_csv, to_html, to_markdown
from beard_jax.leaderboard.write import write_leaderboards

__all__ = [
  'BASELINE_METHODS',
  'BOARD_IPCS',
  'DATASETS',
  'UNRANKED_CODES',
  'AccuracyTable',
  'Board',
  'Entry',
  'ModelLine',
  'build_accuracy_tables',
  'build_boards',
  'is_baseline',
  'missing_published_boards',
  'plot_crei_vs_ipc',
  'plot_metric_bars',
  'plot_robust_accuracy',
  'plot_training_comparison',
  'rank_rows',
  'to_csv',
  'to_html',
  'to_markdown',
  'write_leaderboards',
]

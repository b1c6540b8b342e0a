"""BEARD's metrics (RR, AE, CREI) and the importer of the published logs."""

from beard_jax.metrics.aggregate import (
  average_over_seeds,
  canonical_attack_name,
  compute_metrics,
)
from beard_jax.metrics.beard_log import (
  BeardLogError,
  load_beard_logs,
  parse_beard_log,
  parse_result_line,
)
from beard_jax.metrics.formulas import (
  CLEAN_TIME_RULES,
  RR_FUNCTIONS,
  attack_efficiency,
  crei,
  diagnose,
  get_rr_fn,
  present_value,
  robustness_ratio,
  rr_beard,
  rr_rome,
  rr_rome_plus,
)
from beard_jax.metrics.report import present_row, summarize, summary_row

__all__ = [
  'BeardLogError',
  'CLEAN_TIME_RULES',
  'RR_FUNCTIONS',
  'attack_efficiency',
  'average_over_seeds',
  'canonical_attack_name',
  'compute_metrics',
  'crei',
  'diagnose',
  'get_rr_fn',
  'load_beard_logs',
  'parse_beard_log',
  'parse_result_line',
  'present_row',
  'present_value',
  'robustness_ratio',
  'rr_beard',
  'rr_rome',
  'rr_rome_plus',
  'summarize',
  'summary_row',
]

"""Computes RR, AE and CREI from published BEARD logs and prints them as JSON.

  python -m beard_jax.metrics --beard_logs=ConvNet_CIFAR10_1_evaluation_log.txt,\
ConvNet_CIFAR10_10_evaluation_log.txt [--metrics_type=beard|rome|rome+] [--alpha=0.5] \
[--clean_time=toolkit|paper]

Prints {"settings": {...}, "results": [...]}: one entry per method, dataset, IPC (and
'combined') and mode (targeted, untargeted), values rounded to two decimals as the
toolkit prints them (`--digits=-1` keeps full precision). A malformed line stops the
run with `file:line: expected ...`.
"""

from __future__ import annotations

import json
import sys

from absl import app, flags

from beard_jax.metrics import aggregate, beard_log, formulas, report

_LOGS = flags.DEFINE_list('beard_logs', None, 'Comma-separated BEARD log files.', required=True)
_METRICS_TYPE = flags.DEFINE_enum(
  'metrics_type', 'beard', sorted(formulas.RR_FUNCTIONS), 'Robustness-ratio variant.'
)
_ALPHA = flags.DEFINE_float('alpha', 0.5, 'CREI weight of RR, in [0, 1].')
_CLEAN_TIME = flags.DEFINE_enum(
  'clean_time', 'toolkit', list(formulas.CLEAN_TIME_RULES), 'Which clean-pass time T0 to use.'
)
_ADVERSARIES = flags.DEFINE_enum(
  'adversaries', 'multi', list(aggregate.ADVERSARIES), 'All attacks, one attack each, or both.'
)
_TRAINING = flags.DEFINE_enum(
  'training', 'standard', ['standard', 'adversarial'], 'How the logged models were trained.'
)
_DIGITS = flags.DEFINE_integer('digits', 2, 'Decimals in the output; -1 keeps full precision.')


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  try:
    records = beard_log.load_beard_logs(_LOGS.value, training=_TRAINING.value)
    rows = aggregate.compute_metrics(
      records,
      metrics_type=_METRICS_TYPE.value,
      alpha=_ALPHA.value,
      clean_time=_CLEAN_TIME.value,
      adversaries=_ADVERSARIES.value,
    )
  except (ValueError, OSError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)
  settings = {
    'beard_logs': _LOGS.value,
    'metrics_type': _METRICS_TYPE.value,
    'alpha': _ALPHA.value,
    'clean_time': _CLEAN_TIME.value,
    'adversaries': _ADVERSARIES.value,
  }
  digits = None if _DIGITS.value < 0 else _DIGITS.value
  output = {'settings': settings, 'results': report.summarize(rows, digits)}
  print(json.dumps(output, indent=2))


if __name__ == '__main__':
  app.run(main)

"""Our records side by side with BEARD's published accuracies.

  python -m beard_jax.metrics.compare --results=W1/results.jsonl,W2/results.jsonl \
    --beard_logs=BACON_ConvNet_CIFAR10_50_evaluation_log.txt

Prints a Markdown table, one row per record of ours that has a published counterpart
(method, dataset, IPC, attack, mode, and for `--transfer` records the model scored, from
a transfer log's per-model accuracies): our accuracy and its example count N, the published
one, the difference, and a verdict; under it, a note for each N of ours that is not the
published N (`--full_set`, BEARD's 10,000 test images): "N 512 vs published 10000".

On the full test set the verdict is `equal` when the two agree to the published two
decimals. On a subset of N images our accuracy estimates the full-set one with a
binomial error, so the verdict is `within 95 %` when the published value lies inside
our Wilson 95 % interval.

Ties. A record also says how many adversarial predictions were float-rounding ties
(`boundary_examples`) and the accuracy range that flipping them could give
(`robust_acc_range`, see `beard_jax.evaluate.runner`). Where the published value
lies in that range on the full set, the verdict is `within tie range`; on a subset,
the interval runs from the Wilson low of the range's low end to the Wilson high of
its high end. Records without the fields (older runs) are judged without ties and show
`–` in the ties column.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterable, Mapping

import pandas as pd
from absl import app, flags

from beard_jax.io.atomic import read_complete_lines
from beard_jax.metrics import aggregate, beard_log
from beard_jax.metrics.tables import MISSING, frame_to_markdown

_RESULTS = flags.DEFINE_list('results', None, 'Our results.jsonl files.', required=True)
_LOGS = flags.DEFINE_list('beard_logs', None, 'BEARD log files.', required=True)
_FULL_SET = flags.DEFINE_integer('full_set', 10000, 'Test-set size of the published runs.')

Z_95 = 1.959964


def wilson_interval(percent: float, n: int) -> tuple[float, float]:
  """The Wilson 95 % interval, in percent, of a proportion `percent` % measured on n samples."""
  p = percent / 100.0
  centre = (p + Z_95**2 / (2 * n)) / (1 + Z_95**2 / n)
  half = Z_95 * math.sqrt(p * (1 - p) / n + Z_95**2 / (4 * n * n)) / (1 + Z_95**2 / n)
  return 100.0 * (centre - half), 100.0 * (centre + half)


def _key(record: Mapping) -> tuple:
  attack = aggregate.canonical_attack_name(record['attack'])
  scored_on = (record.get('transfer_to') or '').split('/')[0].lower()
  return (record['method'].lower(), record['dataset'].lower().replace('-', ''), int(record['ipc']),
          attack, bool(record['targeted']), scored_on)  # fmt: skip


def compare(
  ours: Iterable[Mapping], published: Iterable[Mapping], full_set: int = 10000
) -> list[dict]:
  """Rows of (ours, published) for every record of ours with a published counterpart.

  Args:
    ours: our results records (`results.jsonl`).
    published: records from `beard_log.load_beard_logs`.
    full_set: the size of the published test set; fewer examples of ours are a subset.

  Returns:
    Dicts with method, ipc, attack, mode, ours, n, published_n (`full_set`), published,
    diff (points), images (the difference in images of ours), low, high (the interval the
    verdict uses: Wilson 95 % on a subset, widened by ties; the tie range on the full set),
    ties (None where the record predates the field), verdict.
  """
  reference = {_key(r): r for r in published}
  rows = []
  for record in ours:
    match = None if record.get('sweep') else reference.get(_key(record))
    if match is None:
      continue
    attack = _key(record)[3]
    value = record['clean_acc'] if attack == 'clean' else record['robust_acc']
    expected = match['clean_acc'] if attack == 'clean' else match['robust_acc']
    n = int(record['num_examples'])
    ties = 0 if attack == 'clean' else record.get('boundary_examples')  # None: not recorded
    tie_low, tie_high = (value, value) if not ties else record['robust_acc_range']
    if n >= full_set:
      low, high = tie_low, tie_high
      if round(value, 2) == round(expected, 2):
        verdict = 'equal'
      else:
        verdict = 'within tie range' if low <= expected <= high else 'differs'
    else:
      low, high = wilson_interval(tie_low, n)[0], wilson_interval(tie_high, n)[1]
      verdict = 'within 95 %' if low <= expected <= high else 'outside 95 %'
    rows.append(
      dict(method=record['method'], scored_on=_key(record)[5].upper() or MISSING,
           ipc=record['ipc'], attack=attack,
           mode='targeted' if record['targeted'] else 'untargeted', ours=value, n=n,
           published_n=full_set, published=expected, diff=value - expected,
           images=round((value - expected) * n / 100), low=low, high=high, ties=ties,
           verdict=verdict)
    )  # fmt: skip
  order = ('method', 'scored_on', 'ipc', 'attack', 'mode')
  return sorted(rows, key=lambda r: (*(r[k] for k in order), -r['n']))


def markdown_table(rows: list[dict]) -> str:
  """The rows as a Markdown table (accuracies in %, two decimals), then `sample_size_notes`."""
  frame = pd.DataFrame(
    {
      'method': [r['method'] for r in rows],
      'IPC': [r['ipc'] for r in rows],
      'attack': [r['attack'] for r in rows],
      'mode': [r['mode'] for r in rows],
      'ours %': [f'{r["ours"]:.2f}' for r in rows],
      'N': [r['n'] for r in rows],
      'ties': [MISSING if r['ties'] is None else r['ties'] for r in rows],
      'interval': [f'{r["low"]:.2f}–{r["high"]:.2f}' for r in rows],
      'published %': [f'{r["published"]:.2f}' for r in rows],
      'diff (images)': [f'{r["diff"]:+.2f} ({r["images"]:+d})' for r in rows],
      'verdict': [r['verdict'] for r in rows],
    }
  )
  if any(r['scored_on'] != MISSING for r in rows):  # Transfer rows: the model scored.
    frame.insert(1, 'scored on', [r['scored_on'] for r in rows])
  table = frame_to_markdown(frame, left=('method', 'scored on', 'attack', 'mode', 'verdict'))
  notes = sample_size_notes(rows)
  return table + ''.join(f'\n\n{note}' for note in notes)


def sample_size_notes(rows: list[dict]) -> list[str]:
  """One note per (our N, published N) pair that differ: 'N 512 vs published 10000: ...'."""
  counts: dict[tuple[int, int], int] = {}
  for r in rows:
    if r['n'] != r['published_n']:
      counts[r['n'], r['published_n']] = counts.get((r['n'], r['published_n']), 0) + 1
  return [
    f'Note: N {n} vs published {published} in {count} row(s): ours '
    + (
      f'is on a subset of {n} test images; the verdict asks whether the published value '
      'lies in our Wilson 95 % interval.'
      if n < published
      else f'has more test images than the published {published}.'
    )
    for (n, published), count in sorted(counts.items())
  ]


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  try:
    ours = []
    for path in _RESULTS.value:
      if not os.path.exists(path):
        raise FileNotFoundError(f'no results file {path}')
      ours += [json.loads(line) for line in read_complete_lines(path)]
    published = beard_log.load_beard_logs(_LOGS.value)
    for path in _LOGS.value:  # Transfer logs: also every model's accuracy.
      with open(path, encoding='utf-8') as f:
        if 'eval_accuracies_target' in f.read():
          published += beard_log.parse_beard_transfer_log(path)
  except (ValueError, OSError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)
  rows = compare(ours, published, _FULL_SET.value)
  if not rows:
    print('error: no record of ours has a published counterpart', file=sys.stderr)
    sys.exit(1)
  print(markdown_table(rows))


if __name__ == '__main__':
  app.run(main)

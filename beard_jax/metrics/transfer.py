"""RR, AE and CREI of transfer attacks, as BEARD's black-box metric scripts compute them.

BEARD's `metrics/black_box/convert_to_white_box.py` rewrites a source model's transfer
log as one white-box log per scored model: that model's accuracies under the source's
adversarials, with the source's attack times, then runs the white-box metrics on each.
`transfer_metrics` does the same with transfer records (ours from `--transfer`, or a
published log through `beard_log.parse_beard_transfer_log`): per source, every target's
records become white-box records of the target (clean accuracy: the target's; clean
time: the source's clean pass) and go through `compute_metrics`. So AE is the same for
every target of a source, and RR measures how much the source's adversarials cost it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from beard_jax.metrics.aggregate import compute_metrics


def _source(record: Mapping) -> tuple:
  return (record['method'], record['ipc'], record['seed'], record['training'])


def _as_target(record: Mapping) -> dict:
  """A transfer record rewritten as a white-box record of the model it was scored on."""
  method, ipc, seed, training = record['transfer_to'].split('/')
  return dict(
    record,
    method=method,
    ipc=int(ipc.removeprefix('ipc')),
    seed=int(seed.removeprefix('seed')),
    training=training,
    transfer_to='',
  )


def as_white_box(records: Iterable[Mapping], source: tuple) -> list[dict]:
  """The white-box records of every model scored on `source`'s adversarials.

  Args:
    records: results records holding the source's transfer records and, when those lack
      `clean` transfer records (ours), the source's white-box `clean` records.
    source: (method, ipc, seed, training) of the source model.
  """
  records = list(records)
  moved = [r for r in records if r.get('transfer_to') and _source(r) == source]
  converted = [_as_target(r) for r in moved]
  if not any(r['attack'] == 'clean' for r in moved):
    clean_seconds = {
      r['targeted']: r['attack_seconds']
      for r in records
      if _source(r) == source and r['attack'] == 'clean' and not r.get('transfer_to')
    }
    targets = {
      (r['transfer_to'], r['targeted']): r for r in moved if r['targeted'] in clean_seconds
    }
    converted += [
      dict(
        _as_target(r),
        attack='clean',
        robust_acc=r['clean_acc'],
        attack_seconds=clean_seconds[targeted],
      )
      for (_, targeted), r in sorted(targets.items())
    ]
  return converted


def transfer_metrics(records: Iterable[Mapping], **settings) -> list[dict]:
  """`compute_metrics` rows of every (source, scored model), each with `source` added.

  Args:
    records: results records (transfer records and the sources' clean records).
    **settings: `compute_metrics` keyword arguments (metrics_type, alpha, clean_time, ...).

  Returns:
    Rows as `compute_metrics` returns them, `method`/`ipc`/`seed` naming the scored model
    and `source` (`<METHOD>/ipc<IPC>/seed<SEED>/<training>`) the model attacked.
  """
  records = list(records)
  sources = sorted({_source(r) for r in records if r.get('transfer_to')}, key=str)
  rows = []
  for source in sources:
    label = '{}/ipc{}/seed{}/{}'.format(*source)
    for row in compute_metrics(as_white_box(records, source), **settings):
      rows.append(dict(row, source=label))
  return rows

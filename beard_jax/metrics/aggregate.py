"""From results records to metric rows: per IPC and combined over IPCs (PROTOCOL.md §6).

Records follow docs/CONTRACTS.md: one dict per (method, dataset, ipc, seed, protocol,
training, attack, targeted); the `clean` record of a mode carries that mode's clean
accuracy and its clean-pass time T0 in `attack_seconds`.

Seeds: accuracies and times are first averaged over the seeds of each
(model configuration, attack, mode), then the formulas are applied once to those means
(the published toolkit runs one seed, so this reduces to it; RR is not linear in the
accuracies, so averaging per-seed RR would give another number). Each row reports the
smallest seed count among the records it used, and a note when counts differ. Beside that
headline value each row carries the spread over seeds: the formulas applied to each seed
alone, and the population standard deviation of those per-seed values (`seed_std`).

A clean accuracy at or below chance (100/K % for K classes, 0 % included) gets a
`clean_at_chance` note: the ratios of such a model measure nothing, whatever they read.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple

from beard_jax import protocols
from beard_jax.data.specs import DATASET_SPECS, canonical_dataset_name
from beard_jax.metrics import formulas

_ATTACK_ALIASES = {
  'no': 'clean',
  'none': 'clean',
  'natural': 'clean',
  'noattack': 'clean',
  'no_attack': 'clean',
  'autoattack': 'aa',
  'auto_attack': 'aa',
  'c&w': 'cw',
  'pgdl2': 'pgd_l2',
  'pgd-l2': 'pgd_l2',
  'deep_fool': 'deepfool',
}
_KEY_FIELDS = ('method', 'dataset', 'ipc', 'protocol', 'training')
_REQUIRED = (*_KEY_FIELDS, 'seed', 'attack', 'targeted', 'attack_seconds')
ADVERSARIES = ('multi', 'single', 'both')


def canonical_attack_name(name: str) -> str:
  """Lower-case attack name, common spellings merged.

  'Clean'/'No'/'None'/'Natural' → 'clean', 'AutoAttack' → 'aa', 'C&W' → 'cw', 'PGDL2' → 'pgd_l2'.
  """
  key = name.strip().lower()
  return _ATTACK_ALIASES.get(key, key)


def _mean(values: Sequence[float]) -> float:
  return math.fsum(values) / len(values)


def _record_accuracy(record: Mapping, attack: str) -> float:
  if attack == 'clean':
    value = record.get('clean_acc', record.get('robust_acc'))
  else:
    value = record.get('robust_acc')
  if value is None:
    field = 'clean_acc' if attack == 'clean' else 'robust_acc'
    raise ValueError(f'record {_describe(record)} has no {field}')
  return float(value)


def _describe(record: Mapping) -> str:
  return ', '.join(f'{k}={record.get(k)!r}' for k in (*_KEY_FIELDS, 'attack', 'targeted', 'seed'))


def average_over_seeds(records: Iterable[Mapping]) -> dict[tuple, dict[bool, dict[str, tuple]]]:
  """Averages accuracy and time over seeds.

  Returns:
    {(method, dataset, ipc, protocol, training): {targeted: {attack: (acc, seconds, n_seeds)}}}
    with canonical attack names.

  Raises:
    ValueError: a record lacks a field, or two records share a seed.
  """
  samples = defaultdict(dict)
  for index, record in enumerate(records):
    missing = [k for k in _REQUIRED if k not in record]
    if missing:
      raise ValueError(f'record #{index} lacks fields {missing}; CONTRACTS.md requires {_REQUIRED}')
    attack = canonical_attack_name(str(record['attack']))
    key = (tuple(record[k] for k in _KEY_FIELDS), bool(record['targeted']), attack)
    if record['seed'] in samples[key]:
      raise ValueError(f'duplicate record for {_describe(record)}')
    seconds = record['attack_seconds']
    if seconds is None:
      raise ValueError(f'record {_describe(record)} has attack_seconds=None')
    samples[key][record['seed']] = (_record_accuracy(record, attack), float(seconds))
  grouped = defaultdict(lambda: defaultdict(dict))
  for (model_key, targeted, attack), by_seed in samples.items():
    accs = [a for a, _ in by_seed.values()]
    secs = [t for _, t in by_seed.values()]
    grouped[model_key][targeted][attack] = (_mean(accs), _mean(secs), len(by_seed))
  return grouped


def _clean_reference(modes: Mapping[bool, Mapping], targeted: bool, clean_time: str):
  """Returns (C, T0, seed counts, notes) for one mode of one model configuration."""
  notes = []
  own, other = modes.get(targeted, {}).get('clean'), modes.get(not targeted, {}).get('clean')
  if own is None and other is None:
    mode = 'targeted' if targeted else 'untargeted'
    raise ValueError(f'no clean record for either mode (needed for {mode} C and T0)')
  if own is None:
    notes.append('clean_from_other_mode: this mode has no clean record; C and T0 from the other')
  ref = own if own is not None else other
  seeds = [ref[2]]
  t0 = ref[1]
  if clean_time == 'toolkit':
    if own is not None and other is not None:
      t0 = min(own[1], other[1])
      seeds.append(other[2])
    else:
      notes.append('toolkit_t0_one_mode: only one clean pass, T0 is its time, not a minimum')
  return ref[0], t0, seeds, notes


def _metric_row(base, clean_acc, clean_seconds, entries, seeds, notes, settings):
  """Applies the formulas to entries [(name, ipc, acc, seconds, n_seeds)]."""
  names = [e[0] for e in entries]
  accs = [e[2] for e in entries]
  secs = [e[3] for e in entries]
  seeds = [*seeds, *(e[4] for e in entries)]
  metrics_type, alpha = settings['metrics_type'], settings['alpha']
  rr = formulas.robustness_ratio(clean_acc, accs, metrics_type)
  ae = formulas.attack_efficiency(clean_seconds, secs)
  notes = [*notes, *formulas.diagnose(clean_acc, accs, clean_seconds, secs, names, metrics_type)]
  if len(set(seeds)) > 1:
    notes.append(f'unequal_seed_counts: records average over {sorted(set(seeds))} seeds')
  worst = min(range(len(accs)), key=lambda i: (accs[i], names[i]))
  return {
    **base,
    **settings,
    'rr': rr,
    'ae': ae,
    'crei': formulas.crei(rr, ae, alpha),
    'clean_acc': clean_acc,
    'clean_seconds': clean_seconds,
    'worst_robust_acc': accs[worst],
    'worst_attack': names[worst],
    'attacks': names,
    'attack_ipcs': [e[1] for e in entries],
    'attack_accs': accs,
    'attack_seconds': secs,
    'num_seeds': min(seeds),
    'degenerate': notes,
  }


def _ipc_key(ipc) -> tuple:
  return (0, ipc, '') if isinstance(ipc, (int, float)) else (1, 0, str(ipc))


def compute_metrics(
  records: Iterable[Mapping],
  *,
  metrics_type: str = 'beard',
  alpha: float = 0.5,
  clean_time: str = 'toolkit',
  adversaries: str = 'multi',
  targeted_excluded: Iterable[str] | None = None,
) -> list[dict]:
  """Metric rows per (method, dataset, protocol, training, targeted, ipc | 'combined').

  Args:
    records: results records (CONTRACTS.md); `clean` records give C and T0. Sweep
      points and transfer records (`sweep`, `transfer_to` not '') are left out: they make
      curves and transfer matrices, not metrics.
    metrics_type: RR variant, 'beard' (default), 'rome' or 'rome+'.
    alpha: CREI weight of RR, in [0, 1].
    clean_time: 'toolkit' (T0 = min of the targeted and untargeted clean times, both
      modes) or 'paper' (each mode's own clean time).
    adversaries: 'multi' (one row over all attacks of a mode, `adversary='all'`),
      'single' (one row per attack, `adversary=<attack>`) or 'both'.
    targeted_excluded: attacks dropped from targeted rows; None: per record's protocol,
      `protocols.targeted_exclusions` (under `beard` DeepFool, AA and Square, which it runs
      untargeted only, as BEARD's toolkit drops them; under `standard` none).

  Returns:
    Rows (dicts) with the key fields, `ipc` (the record's value or 'combined'),
    `adversary`, the settings, full-precision `rr`, `ae`, `crei`, `clean_acc`,
    `clean_seconds` (T0), `worst_robust_acc`/`worst_attack` (min over the attacks
    used), aligned lists `attacks`, `attack_ipcs`, `attack_accs`, `attack_seconds`,
    `attacks_dropped`, `ipcs`, `num_seeds`, `degenerate` (notes, see
    `formulas.diagnose` and `clean_at_chance` above), and the spread over seeds:
    `seed_std` ({'clean_acc', 'rr', 'ae', 'crei', 'worst_robust_acc', 'robust_acc/<attack>':
    population std of the per-seed values}, the per-attack value being the mean over the
    row's IPCs) with `seed_std_seeds` (the seeds it is over; {} and [] with fewer than two
    seeds). A mode with no usable attack gets `rr`/`ae`/`crei` None and a `no_attacks`
    note. Sorted by key; 'combined' after the IPCs.

  Raises:
    ValueError: unknown setting, malformed or duplicate record, or a model
      configuration with no clean record in either mode.
  """
  formulas.get_rr_fn(metrics_type)
  formulas.check_alpha(alpha)
  formulas.check_clean_time_rule(clean_time)
  if adversaries not in ADVERSARIES:
    raise ValueError(f'unknown adversaries {adversaries!r}; choose from {sorted(ADVERSARIES)}')
  excluded = _exclusions(targeted_excluded)
  settings = {'metrics_type': metrics_type, 'alpha': alpha, 'clean_time': clean_time}
  records = [r for r in records if not r.get('sweep') and not r.get('transfer_to')]
  rows = _compute(records, settings, adversaries, excluded)
  return _with_seed_spread(rows, records, settings, adversaries, excluded)


def _exclusions(targeted_excluded: Iterable[str] | None) -> Callable[[str], set[str]]:
  """protocol name → canonical names of the attacks its targeted rows leave out."""
  if targeted_excluded is not None:
    fixed = {canonical_attack_name(a) for a in targeted_excluded}
    return lambda protocol: fixed
  return lambda protocol: {
    canonical_attack_name(a) for a in protocols.targeted_exclusions(protocol)
  }


def _compute(records: list[Mapping], settings: dict, adversaries: str, excluded) -> list[dict]:
  """The headline rows of `compute_metrics`: seeds averaged, then the formulas."""
  grouped = average_over_seeds(records)

  rows = []
  # Per-IPC ingredients of the combined rows, keyed by (method, dataset, protocol,
  # training, targeted).
  per_ipc = defaultdict(list)
  for model_key in sorted(grouped, key=lambda k: (*map(str, k[:2]), _ipc_key(k[2]), *k[3:])):
    method, dataset, ipc, protocol, training = model_key
    modes = grouped[model_key]
    for targeted in sorted(modes):
      try:
        clean_acc, t0, seeds, notes = _clean_reference(modes, targeted, settings['clean_time'])
      except ValueError as e:
        raise ValueError(f'{dict(zip(_KEY_FIELDS, model_key, strict=True))}: {e}') from None
      attacks = {a: v for a, v in modes[targeted].items() if a != 'clean'}
      dropped = sorted(a for a in attacks if targeted and a in excluded(protocol))
      entries = [(a, ipc, *attacks[a]) for a in sorted(attacks) if a not in dropped]
      base = (method, dataset, protocol, training, targeted)
      part = _Part(ipc, clean_acc, t0, seeds, notes, entries, dropped)
      per_ipc[base].append(part)
      rows.extend(_rows_for(base, ipc, [part], settings, adversaries))
  for base, parts in per_ipc.items():
    rows.extend(_rows_for(base, 'combined', parts, settings, adversaries))
  return sorted(rows, key=row_sort_key)


def row_sort_key(row: Mapping) -> tuple:
  """Orders rows by key fields, IPCs ascending then 'combined', adversary 'all' first."""
  ipc = (2, 0, '') if row['ipc'] == 'combined' else _ipc_key(row['ipc'])
  fields = (row['method'], row['dataset'], row['protocol'], row['training'])
  return (*map(str, fields), row['targeted'], ipc, row['adversary'] != 'all', row['adversary'])


class _Part(NamedTuple):
  """One IPC's ingredients: C, T0, the clean seed counts, notes and attack entries."""

  ipc: object
  clean_acc: float
  clean_seconds: float
  seeds: list
  notes: list
  entries: list  # [(attack, ipc, acc, seconds, n_seeds)]
  dropped: list


def _pool(base: tuple, ipc, parts: list[_Part], settings: dict, adversary: str) -> dict:
  """One row from the IPCs in `parts`: C and T0 averaged, attacks pooled.

  Only IPCs that contribute an attack (of `adversary`, or any for 'all') enter the
  averages; with none, the row has no metrics.
  """
  if adversary == 'all':
    chosen = [(p, p.entries) for p in parts]
  else:
    chosen = [(p, [e for e in p.entries if e[0] == adversary]) for p in parts]
  used = [(p, entries) for p, entries in chosen if entries] or [(p, []) for p in parts]
  clean_acc = _mean([p.clean_acc for p, _ in used])
  clean_seconds = _mean([p.clean_seconds for p, _ in used])
  seeds = [s for p, _ in used for s in p.seeds]
  notes = [*sorted({n for p, _ in used for n in p.notes}), *_chance_notes(base[1], clean_acc)]
  entries = [e for _, es in used for e in es]
  keys = dict(zip(('method', 'dataset', 'protocol', 'training', 'targeted'), base, strict=True))
  head = {**keys, 'ipc': ipc}
  if entries:
    row = _metric_row(head, clean_acc, clean_seconds, entries, seeds, notes, settings)
  else:
    row = _empty_row(head, clean_acc, clean_seconds, seeds, notes, settings)
  row['adversary'] = adversary
  row['attacks_dropped'] = sorted({d for p in parts for d in p.dropped})
  row['ipcs'] = [p.ipc for p, _ in used]
  return row


def _rows_for(base, ipc, parts, settings, adversaries):
  out = []
  if adversaries in ('multi', 'both'):
    out.append(_pool(base, ipc, parts, settings, 'all'))
  if adversaries in ('single', 'both'):
    for name in sorted({e[0] for p in parts for e in p.entries}):
      out.append(_pool(base, ipc, parts, settings, name))
  return out


def _empty_row(base, clean_acc, clean_seconds, seeds, notes, settings):
  return {
    **base,
    **settings,
    'rr': None,
    'ae': None,
    'crei': None,
    'clean_acc': clean_acc,
    'clean_seconds': clean_seconds,
    'worst_robust_acc': None,
    'worst_attack': None,
    'attacks': [],
    'attack_ipcs': [],
    'attack_accs': [],
    'attack_seconds': [],
    'num_seeds': min(seeds),
    'degenerate': [*notes, 'no_attacks: no attack left in this mode; metrics undefined'],
  }


def _chance_notes(dataset: str, clean_acc: float) -> list[str]:
  """A `clean_at_chance` note when C <= 100/K % (K classes); none for an unknown dataset."""
  try:
    num_classes = DATASET_SPECS[canonical_dataset_name(dataset)].num_classes
  except ValueError:
    return []
  chance = 100.0 / num_classes
  if clean_acc > chance:
    return []
  return [
    f'clean_at_chance: C = {clean_acc:.2f} % is at or below chance ({chance:.2f} % for '
    f'{num_classes} classes); RR, AE and CREI measure nothing here'
  ]


_GROUP_FIELDS = ('method', 'dataset', 'protocol', 'training')
_ROW_KEY_FIELDS = (*_GROUP_FIELDS, 'targeted', 'ipc', 'adversary')


def _row_key(row: Mapping) -> tuple:
  return tuple(row[k] for k in _ROW_KEY_FIELDS)


def _with_seed_spread(rows, records, settings, adversaries, excluded) -> list[dict]:
  """`rows` with `seed_std` and `seed_std_seeds` added, from each seed's own rows.

  A seed's rows come from its records alone; a seed without a clean pass of its own
  cannot give them and is left out of the spread.
  """
  subsets = defaultdict(lambda: defaultdict(list))
  for record in records:
    subsets[tuple(record[k] for k in _GROUP_FIELDS)][record['seed']].append(record)
  per_seed = defaultdict(list)  # row key -> [(seed, that seed's row)]
  for by_seed in subsets.values():
    if len(by_seed) < 2:
      continue
    for seed, subset in by_seed.items():
      try:
        seed_rows = _compute(subset, settings, adversaries, excluded)
      except ValueError:
        continue
      for seed_row in seed_rows:
        per_seed[_row_key(seed_row)].append((seed, seed_row))
  return [{**row, **_spread(row, per_seed[_row_key(row)])} for row in rows]


def _spread(row: Mapping, seed_rows: list[tuple]) -> dict:
  """Population std over the seeds whose own row used the row's attacks and IPCs."""
  same = [
    (seed, r)
    for seed, r in seed_rows
    if (r['attacks'], r['attack_ipcs'], r['ipcs'])
    == (row['attacks'], row['attack_ipcs'], row['ipcs'])
  ]
  if len(same) < 2:
    return {'seed_std': {}, 'seed_std_seeds': []}
  values = [_seed_values(r) for _, r in same]
  return {
    'seed_std': {k: statistics.pstdev([v[k] for v in values]) for k in values[0]},
    'seed_std_seeds': sorted((seed for seed, _ in same), key=str),
  }


def _seed_values(row: Mapping) -> dict[str, float]:
  """The values of one seed's row that the spread covers (see `compute_metrics`)."""
  values = {'clean_acc': row['clean_acc']}
  if row['crei'] is not None:
    values.update(
      rr=row['rr'], ae=row['ae'], crei=row['crei'], worst_robust_acc=row['worst_robust_acc']
    )
  for attack in sorted(set(row['attacks'])):
    accs = [a for n, a in zip(row['attacks'], row['attack_accs'], strict=True) if n == attack]
    values[f'robust_acc/{attack}'] = _mean(accs)
  return values

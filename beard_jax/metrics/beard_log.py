"""Imports the published BEARD evaluation logs as results records (PROTOCOL.md §6).

A result line (any line containing `final acc is`) must read, with any amount of
whitespace between tokens and any prefix such as `2024-05-01 12:00:00 - INFO - `:

  <Attack> attack on <Method>: final acc is:  target_attack: <acc> +- <std>, attack time is
  <sec>; non_target_attack: <acc> +- <std>, attack time is <sec>, dataset: <name>, IPC: <n>, ...

Numbers may be written `36.8`, `27`, `.5` or `1.5e-3`. The clean pass is the line whose
attack is `Clean` (also accepted, any case: `No`, `None`, `Natural`, `NoAttack`,
`No_attack`); it becomes attack 'clean'. Attack names go through
`canonical_attack_name` (`Deepfool` → 'deepfool', `AA` → 'aa', `CW` → 'cw').
Every line gives two records, targeted and untargeted; the targeted DeepFool/AA
records are kept and `compute_metrics` drops them like the toolkit does. Other lines
(training progress, headers) are ignored.

The IPC comes from the file name where it has one (`..._CIFAR10_50_evaluation_log.txt`),
as BEARD's metric scripts take it; else from the line. (Its published query log says
`IPC: 1` on the lines of the IPC-50 model.)

Transfer logs (`evaluate_model_blackbox.py`) end each line with the accuracy of every
model of its pool on the source's adversarials, `eval_accuracies_target: {[{'DC':
0.5431, ...}]}` and `eval_accuracies_non_target: ...`; `parse_beard_transfer_log`
turns them into transfer records (CONTRACTS.md: `transfer_to`), read with
`ast.literal_eval` (literals only).
"""

from __future__ import annotations

import ast
import os
import pathlib
import re
from collections.abc import Sequence

from beard_jax.data.specs import canonical_dataset_name
from beard_jax.metrics.aggregate import canonical_attack_name

_NUM = r'[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?'
_TRIGGER = re.compile(r'final\s+acc\s+is', re.IGNORECASE)
_HEAD = re.compile(r'(?P<attack>[\w&+\-]+)\s+attack\s+on\s+', re.IGNORECASE)
# (what the reader expected, pattern matched right where the previous piece ended).
_PIECES = (
  ("'<Method>: final acc is:'", r'(?P<method>[^:]+?)\s*:\s*final\s+acc\s+is\s*:\s*'),
  ("'target_attack: <acc>'", rf'target_attack\s*:\s*(?P<t_acc>{_NUM})\s*'),
  ("'+- <std>,'", rf'\+-\s*(?P<t_std>{_NUM})\s*,\s*'),
  ("'attack time is <sec>;'", rf'attack\s+time\s+is\s*(?P<t_sec>{_NUM})\s*;\s*'),
  ("'non_target_attack: <acc>'", rf'non_target_attack\s*:\s*(?P<u_acc>{_NUM})\s*'),
  ("'+- <std>,'", rf'\+-\s*(?P<u_std>{_NUM})\s*,\s*'),
  ("'attack time is <sec>'", rf'attack\s+time\s+is\s*(?P<u_sec>{_NUM})'),
)
_COMPILED = tuple((what, re.compile(p, re.IGNORECASE)) for what, p in _PIECES)
_DATASET = re.compile(r'(?<![\w])dataset\s*:\s*(?P<dataset>[^,;\s]+)', re.IGNORECASE)
_IPC = re.compile(r'(?<![\w])IPC\s*:\s*(?P<ipc>\d+)\b', re.IGNORECASE)
_FILE_IPC = re.compile(r'_(?P<ipc>\d+)_evaluation_log')
_EVAL_ACCURACIES = re.compile(
  r'eval_accuracies_(?P<mode>target|non_target)\s*:\s*\{\[(?P<dict>\{[^{}]*\})\]\}'
)


class BeardLogError(ValueError):
  """A result line that does not follow the published format."""


def parse_result_line(line: str, where: str = '<line>') -> dict | None:
  """Parses one log line.

  Args:
    line: one line of a BEARD log.
    where: `file:line`, used in error messages.

  Returns:
    None for a line without `final acc is`; otherwise a dict with `attack`
    (canonical), `method`, `dataset` (canonical when known, else lower-case),
    `ipc` (int), `targeted`/`untargeted` each {'acc', 'std', 'seconds'} (floats).

  Raises:
    BeardLogError: the line has `final acc is` but breaks the format; the message
      names `where`, what was expected and what was found.
  """
  if not _TRIGGER.search(line):
    return None
  head = _HEAD.search(line)
  if head is None:
    _fail(where, "'<Attack> attack on <Method>:' before 'final acc is'", line, 0)
  fields = {'attack': head['attack']}
  pos = head.end()
  for what, pattern in _COMPILED:
    match = pattern.match(line, pos)
    if match is None:
      _fail(where, what, line, pos)
    fields.update(match.groupdict())
    pos = match.end()
  rest = line[pos:]
  dataset, ipc = _DATASET.search(rest), _IPC.search(rest)
  if dataset is None:
    _fail(where, "', dataset: <name>' after the times", line, pos)
  if ipc is None:
    _fail(where, "', IPC: <integer>' after the times", line, pos)
  try:
    dataset_name = canonical_dataset_name(dataset['dataset'])
  except ValueError:
    dataset_name = dataset['dataset'].strip().lower()
  return {
    'attack': canonical_attack_name(fields['attack']),
    'method': fields['method'].strip(),
    'dataset': dataset_name,
    'ipc': int(ipc['ipc']),
    'targeted': _mode(fields, 't'),
    'untargeted': _mode(fields, 'u'),
  }


def _mode(fields: dict, prefix: str) -> dict:
  return {
    'acc': float(fields[f'{prefix}_acc']),
    'std': float(fields[f'{prefix}_std']),
    'seconds': float(fields[f'{prefix}_sec']),
  }


def _fail(where: str, expected: str, line: str, pos: int) -> None:
  found = line[pos : pos + 40].rstrip('\n')
  raise BeardLogError(f'{where}: expected {expected} at column {pos + 1}, found {found!r}')


def parse_beard_log(
  path: str | os.PathLike, *, protocol: str = 'beard', training: str = 'standard'
) -> list[dict]:
  """Reads one BEARD log file into results records (CONTRACTS.md schema).

  Args:
    path: a published `*_evaluation_log.txt`.
    protocol: the `protocol` field of the records ('beard' for published logs).
    training: the `training` field ('standard' or 'adversarial').

  Returns:
    Two records per result line (targeted, untargeted), seed 0. Attack records carry
    the file's clean accuracy of the same model as `clean_acc` (None if the file has
    no clean line); `hparams` holds the logged std and `source` is `file:line`.

  Raises:
    BeardLogError: a malformed result line, or the same result twice in the file.
  """
  parsed = [(where, result) for where, result, _ in _result_lines(path)]
  clean = {}
  for _, r in parsed:
    if r['attack'] == 'clean':
      clean[(r['method'], r['dataset'], r['ipc'])] = r
  records = []
  for where, r in parsed:
    model_clean = clean.get((r['method'], r['dataset'], r['ipc']))
    for mode in ('targeted', 'untargeted'):
      values = r[mode]
      clean_acc = model_clean[mode]['acc'] if model_clean is not None else None
      records.append(
        {
          'method': r['method'],
          'dataset': r['dataset'],
          'ipc': r['ipc'],
          'seed': 0,
          'protocol': protocol,
          'training': training,
          'attack': r['attack'],
          'targeted': mode == 'targeted',
          'clean_acc': clean_acc,
          'robust_acc': values['acc'],
          'asr': None,
          'ast': None,
          'attack_seconds': values['seconds'],
          'compile_seconds': None,
          'num_examples': None,
          'hparams': {'std': values['std']},
          'versions': {},
          'config_hash': None,
          'source': where,
        }
      )
  _check_unique(records, {})
  return records


def _result_lines(path: str | os.PathLike) -> list[tuple[str, dict, str]]:
  """(`file:line`, parsed result, raw line) of every result line; the file name's IPC wins."""
  named = _FILE_IPC.search(pathlib.Path(path).name)
  lines = []
  with open(path, encoding='utf-8') as f:
    for number, line in enumerate(f, start=1):
      result = parse_result_line(line, f'{path}:{number}')
      if result is not None:
        if named:
          result['ipc'] = int(named['ipc'])
        lines.append((f'{path}:{number}', result, line))
  return lines


def parse_beard_transfer_log(path: str | os.PathLike, *, protocol: str = 'beard') -> list[dict]:
  """Reads a BEARD transfer log into transfer records, one per (line, mode, scored model).

  Records name the source (`method`, the log's IPC, seed 0) and `transfer_to`
  `<MODEL>/ipc<IPC>/seed0/standard` (BEARD's pool holds one model per method, at the
  log's IPC); `robust_acc` is that model's accuracy in %, `clean_acc` its accuracy on
  the `Clean` line, `attack_seconds` the source's pass time (what BEARD's
  `convert_to_white_box.py` keeps). The `Clean` line gives `attack='clean'` records.

  Raises:
    BeardLogError: a result line without both `eval_accuracies_*` dicts.
  """
  rows = []
  for where, result, line in _result_lines(path):
    found = {m['mode']: m['dict'] for m in _EVAL_ACCURACIES.finditer(line)}
    if set(found) != {'target', 'non_target'}:
      raise BeardLogError(f'{where}: expected eval_accuracies_target and _non_target dicts')
    accuracies = {mode: ast.literal_eval(found[key]) for mode, key in
                  (('targeted', 'target'), ('untargeted', 'non_target'))}  # fmt: skip
    rows.append((where, result, accuracies))
  clean = {
    mode: acc for _, r, modes in rows if r['attack'] == 'clean' for mode, acc in modes.items()
  }
  records = []
  for where, r, modes in rows:
    for mode, accuracies in modes.items():
      for model, accuracy in accuracies.items():
        records.append(
          {
            'method': r['method'], 'dataset': r['dataset'], 'ipc': r['ipc'], 'seed': 0,
            'protocol': protocol, 'training': 'standard', 'attack': r['attack'],
            'targeted': mode == 'targeted', 'sweep': '',
            'transfer_to': f'{model}/ipc{r["ipc"]}/seed0/standard',
            'clean_acc': 100.0 * clean[mode][model] if mode in clean else None,
            'robust_acc': 100.0 * float(accuracy), 'attack_seconds': r[mode]['seconds'],
            'source': where,
          }
        )  # fmt: skip
  return records


def load_beard_logs(paths: Sequence[str | os.PathLike], **kwargs) -> list[dict]:
  """`parse_beard_log` over several files; a result seen twice is an error naming both lines."""
  records = []
  seen = {}
  for path in paths:
    file_records = parse_beard_log(path, **kwargs)
    _check_unique(file_records, seen)
    records.extend(file_records)
  return records


def _check_unique(records: list[dict], seen: dict) -> None:
  for record in records:
    key = tuple(record[k] for k in ('method', 'dataset', 'ipc', 'training', 'attack', 'targeted'))
    if key in seen:
      raise BeardLogError(f'{record["source"]}: same result as {seen[key]} ({key})')
    seen[key] = record['source']

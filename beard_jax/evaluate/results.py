"""The results store: `<workdir>/results.jsonl`, one record per finished cell.

A cell is one (method, dataset, ipc, seed, protocol, training, attack,
targeted) evaluation. Its record is appended and fsynced the moment the cell
finishes, so a run killed at any point loses at most the cell in flight; an
unterminated last line (a torn append) is ignored on reading and dropped on
the next write. `<workdir>/config.json` pins the config that produced the
records: a run with another config refuses the workdir rather than mix them.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from beard_jax.errors import DuplicateRecordError, StaleInputError, WorkdirConflictError
from beard_jax.io.atomic import append_line_durably, atomic_write_text, read_complete_lines

RESULTS_FILE = 'results.jsonl'
CONFIG_FILE = 'config.json'
CELL_FIELDS = (
  'method',
  'dataset',
  'ipc',
  'seed',
  'protocol',
  'training',
  'attack',
  'targeted',
  'sweep',
  'transfer_to',
)
# Cell fields that records written before they existed lack, and the value they mean.
_CELL_FIELD_DEFAULTS = {'sweep': '', 'transfer_to': ''}
__all__ = [
  'CELL_FIELDS',
  'RECORD_FIELDS',
  'ResultStore',
  'WorkdirConflictError',
  'cell_key',
  'repair_duplicates',
]

RECORD_FIELDS: dict[str, str] = {
  'method': 'distillation method (DC, DM, ..., full), upper case as found in the pool',
  'dataset': 'canonical dataset name (cifar10, cifar100, tinyimagenet)',
  'ipc': 'images per class of the distilled set the model was trained on',
  'seed': 'training seed of the model',
  'protocol': "threat model: 'standard' or 'beard'",
  'training': "'standard' or 'adversarial'",
  'attack': "attack name; 'clean' for the clean pass",
  'targeted': 'bool: targets (y + 1) mod the protocol modulus',
  'sweep': "'' for an ordinary cell; a --sweep point such as 'eps=2/255' (value in hparams)",
  'transfer_to': "'' for a white-box cell; with --transfer the model scored on adversarials "
  "crafted on this record's model ('DM/ipc10/seed0/standard'); the outcomes are its",
  'runs_as': "the attack that ran: `attack`, except where the protocol's code runs another "
  "under that name (beard: untargeted 'spsa' runs AutoAttack, as BEARD's Spsa branch does)",
  'clean_acc': '% of the examples the model classifies right',
  'robust_acc': '% still right after the attack (BEARD accuracy)',
  'robust_acc_range': '[low, high] %: the accuracies float-rounding ties could give',
  'boundary_examples': 'adversarial predictions whose top-2 logit gap is <= 1e-4',
  'asr': '% per sample: right before and wrong after (targeted: predicts the target)',
  'ast': 'seconds per successful adversarial example; null when none succeeded',
  'attack_seconds': "whole-pass wall time, compilation excluded (BEARD's time)",
  'compile_seconds': 'ahead-of-time compilation of the batch program (0 for sweep points '
  'after the first when they share it)',
  'num_examples': 'test images attacked',
  'mean_linf': 'mean L-inf perturbation, in perturbation_space',
  'mean_l2': 'mean L2 perturbation, in perturbation_space',
  'perturbation_space': "'pixels' ([0, 1]) or 'normalized' (mean/std tensors)",
  'hparams': "the attack factory's keyword arguments as run, scheduling knobs resolved",
  'inputs': '{model_sha256, test_set_sha256} (+ target_sha256 for transfer): content hashes '
  'of what the cell read',
  'model_path': 'the model file (informative; inputs.model_sha256 identifies it)',
  'versions': 'python, jax, jaxlib, flax, optax, numpy, backend, devices, matmul precision',
  'config_hash': 'hash of the result-relevant config (config.json); added by the store',
}
"""Every field of a results record, and what it holds: the one schema that metrics,
report and compare read and docs/CONTRACTS.md lists (a test keeps the three in step)."""


def cell_key(record: dict[str, Any]) -> tuple:
  """The identity of a record's cell; a finished cell is never recomputed.

  A record without `sweep` (written before sweeps existed) is an ordinary cell.
  """
  return tuple(
    record[field] if field in record else _CELL_FIELD_DEFAULTS[field] for field in CELL_FIELDS
  )


def _numbered_records(path: str) -> list[tuple[int, dict[str, Any]]]:
  """(1-based line number, record) of every complete line of `path`."""
  numbered = []
  for number, line in enumerate(read_complete_lines(path, keep_blank=True), start=1):
    if not line.strip():
      continue
    try:
      numbered.append((number, json.loads(line)))
    except json.JSONDecodeError as e:
      raise DuplicateRecordError(
        f'{path}:{number} is not a JSON record ({e.msg}); remove or fix that line'
      ) from None
  return numbered


def _duplicate_lines(numbered: list[tuple[int, dict[str, Any]]]) -> dict[tuple, list[int]]:
  """Cell key → line numbers, for every cell recorded more than once."""
  lines: dict[tuple, list[int]] = {}
  for number, record in numbered:
    lines.setdefault(cell_key(record), []).append(number)
  return {key: numbers for key, numbers in lines.items() if len(numbers) > 1}


def repair_duplicates(path: str) -> str | None:
  """Keeps the first record of every cell in `path` and moves the others aside.

  The moved lines go to `<path>.duplicates-<UTC time>` (kept, never deleted); `path` is
  rewritten atomically.

  Returns:
    The file the duplicates went to, or None when there were none.
  """
  numbered = _numbered_records(path)
  if not _duplicate_lines(numbered):
    return None
  kept, moved, seen = [], [], set()
  for _, record in numbered:
    key = cell_key(record)
    (moved if key in seen else kept).append(json.dumps(record, sort_keys=True))
    seen.add(key)
  aside = f'{path}.duplicates-{time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())}'
  atomic_write_text(aside, '\n'.join(moved) + '\n')
  atomic_write_text(path, '\n'.join(kept) + '\n')
  return aside


class ResultStore:
  """Append-only, crash-safe record store bound to one config.

  Args:
    workdir: the run's directory (created if needed).
    config: the JSON-able config of this run (stored as `config.json`).
    config_hash: the hash of the result-relevant part of `config`; a workdir
      whose `config.json` has another hash is refused.
    results_file: the records file inside `workdir` (sweep tasks write their own).
    writer: False on the non-primary processes of a multi-process run: they read the
      workdir and keep their records in memory; the primary process writes them.

  Raises:
    WorkdirConflictError: the workdir holds another config's results.
    DuplicateRecordError: the results file records a cell twice (see `repair_duplicates`)
      or holds a line that is not JSON; the message names the file and lines.
  """

  def __init__(
    self,
    workdir: str,
    config: dict[str, Any],
    config_hash: str,
    results_file: str = RESULTS_FILE,
    writer: bool = True,
  ):
    self.workdir = workdir
    self.writer = writer
    self.path = os.path.join(workdir, results_file)
    self.config_hash = config_hash
    if writer:
      os.makedirs(workdir, exist_ok=True)
    config_path = os.path.join(workdir, CONFIG_FILE)
    if os.path.exists(config_path):
      with open(config_path, encoding='utf-8') as f:
        previous = json.load(f)
      if previous.get('config_hash') != config_hash:
        raise WorkdirConflictError(
          f'{workdir} holds results of another config (hash {previous.get("config_hash")}, '
          f'this run {config_hash}); use a new --workdir, or rerun with the config in '
          f'{config_path}'
        )
    elif writer:
      atomic_write_text(
        config_path, json.dumps({'config_hash': config_hash, 'config': config}, indent=2)
      )
    if writer:
      self._drop_torn_tail()
    numbered = _numbered_records(self.path)
    duplicates = _duplicate_lines(numbered)
    if duplicates:
      key, lines = next(iter(duplicates.items()))
      raise DuplicateRecordError(
        f'{self.path} records {len(duplicates)} cell(s) more than once (first: '
        f'{dict(zip(CELL_FIELDS, key, strict=True))} on lines {lines}); rerun with --repair '
        'to keep the first record of each cell and move the others aside'
      )
    self._records = [record for _, record in numbered]
    self._by_key = {cell_key(r): r for r in self._records}

  def _drop_torn_tail(self) -> None:
    """Truncates an unterminated last line left by a killed append (opens for writing only then)."""
    if not os.path.exists(self.path):
      return
    with open(self.path, 'rb') as f:
      data = f.read()
    end = data.rfind(b'\n') + 1
    if end != len(data):
      with open(self.path, 'rb+') as f:
        f.truncate(end)

  @property
  def records(self) -> list[dict[str, Any]]:
    """All finished records, in the order they were written."""
    return list(self._records)

  def is_done(self, key: tuple) -> bool:
    return key in self._by_key

  def check_inputs(self, key: tuple, inputs: dict[str, str]) -> None:
    """Raises StaleInputError when the finished cell `key` was computed from other inputs.

    Args:
      key: a cell key.
      inputs: what the cell reads now, name → content hash (`model_sha256`,
        `test_set_sha256`, …), as `add` records it.
    """
    record = self._by_key.get(key)
    if record is None:
      return
    recorded = record.get('inputs', {})
    changed = sorted(name for name in inputs if recorded.get(name) != inputs[name])
    if changed:
      name = changed[0]
      raise StaleInputError(
        f'{self.path}: cell {dict(zip(CELL_FIELDS, key, strict=True))} was computed from '
        f'another {name.removesuffix("_sha256")} ({name} {recorded.get(name)}, now '
        f'{inputs[name]}); its records no longer describe these inputs: give a new --workdir'
      )

  def add(self, record: dict[str, Any]) -> None:
    """Appends a finished cell's record durably; a duplicate cell is an error.

    Raises:
      ValueError: the cell is already recorded, or a `RECORD_FIELDS` field is missing.
    """
    missing = [f for f in CELL_FIELDS if f not in record and f not in _CELL_FIELD_DEFAULTS]
    if missing:
      raise ValueError(f'a record lacks the cell fields {missing}')
    key = cell_key(record)
    if key in self._by_key:
      raise ValueError(f'cell {key} is already recorded in {self.path}')
    record = dict(record, config_hash=self.config_hash)
    if self.writer:
      append_line_durably(self.path, json.dumps(record, sort_keys=True))
    self._records.append(record)
    self._by_key[key] = record

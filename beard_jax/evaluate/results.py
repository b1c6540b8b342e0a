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
from typing import Any

from beard_jax.io.atomic import append_line_durably, atomic_write_text, read_complete_lines

RESULTS_FILE = 'results.jsonl'
CONFIG_FILE = 'config.json'
CELL_FIELDS = ('method', 'dataset', 'ipc', 'seed', 'protocol', 'training', 'attack', 'targeted')


class WorkdirConflictError(RuntimeError):
  """The workdir holds results of a different config or protocol."""


def cell_key(record: dict[str, Any]) -> tuple:
  """The identity of a record's cell; a finished cell is never recomputed."""
  return tuple(record[field] for field in CELL_FIELDS)


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
    self._records = [json.loads(line) for line in read_complete_lines(self.path)]
    self._done = {cell_key(r) for r in self._records}

  def _drop_torn_tail(self) -> None:
    """Truncates an unterminated last line left by a killed append."""
    if not os.path.exists(self.path):
      return
    with open(self.path, 'rb+') as f:
      data = f.read()
      end = data.rfind(b'\n') + 1
      if end != len(data):
        f.truncate(end)

  @property
  def records(self) -> list[dict[str, Any]]:
    """All finished records, in the order they were written."""
    return list(self._records)

  def is_done(self, key: tuple) -> bool:
    return key in self._done

  def add(self, record: dict[str, Any]) -> None:
    """Appends a finished cell's record durably; a duplicate cell is an error."""
    key = cell_key(record)
    if key in self._done:
      raise ValueError(f'cell {key} is already recorded in {self.path}')
    record = dict(record, config_hash=self.config_hash)
    if self.writer:
      append_line_durably(self.path, json.dumps(record, sort_keys=True))
    self._records.append(record)
    self._done.add(key)

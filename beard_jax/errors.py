"""The errors a user can cause and fix: each one line that says what to do.

`launch.py` prints a `UserError` as one line on stderr and exits with code 2; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
  """An input, flag or workdir problem the user can fix; its message says how."""


class ConfigError(UserError, ValueError):
  """A flag or config value that cannot run (unknown name, out of range, missing path)."""


class DataMissingError(UserError, FileNotFoundError):
  """The real dataset is not under `--data_dir`: the message says where it looked."""


class WorkdirError(UserError, RuntimeError):
  """The workdir cannot be used as it is (another config, another run, damaged records)."""


class WorkdirConflictError(WorkdirError):
  """The workdir holds results of a different config or protocol."""


class WorkdirBusyError(WorkdirError):
  """Another run holds the workdir's lock."""


class DuplicateRecordError(WorkdirError):
  """A results file holds two records of one cell."""


class StaleInputError(WorkdirError):
  """A recorded cell was computed from other inputs (model, distilled set or test set)."""


class IncompleteSweepError(WorkdirError):
  """A merge found fewer task files than the sweep has tasks."""

"""Terminal progress for long runs: attack passes (batches) and training (chunks of epochs)."""

from __future__ import annotations

import sys
import time

from absl import logging


class CellProgress:
  """Prints `label: images i/N, rate img/s, ETA` as batches finish.

  On a terminal the line is redrawn in place; in logs (batch jobs) one line is
  logged about every `log_every_s` seconds and at the end. Images are counted, not
  batch slots: the padding of the last batch is not work done.
  """

  def __init__(self, label: str, batch_size: int, num_examples: int, log_every_s: float = 30.0):
    self.label = label
    self.batch_size = batch_size
    self.num_examples = num_examples
    self.log_every_s = log_every_s
    self._elapsed = 0.0
    self._last_log = time.monotonic()
    self._tty = sys.stderr.isatty()

  def __call__(self, batch_index: int, num_batches: int, batch_seconds: float) -> None:
    self._elapsed += batch_seconds
    done = batch_index + 1
    images = min(done * self.batch_size, self.num_examples)
    rate = images / max(self._elapsed, 1e-9)
    eta = (self.num_examples - images) / max(rate, 1e-9)
    line = (
      f'{self.label}: {images}/{self.num_examples} images, {rate:.1f} img/s, '
      f'ETA {format_seconds(eta)}'
    )
    if self._tty:
      end = '\n' if done == num_batches else ''
      sys.stderr.write('\r' + line.ljust(100) + end)
      sys.stderr.flush()
    elif done == num_batches or time.monotonic() - self._last_log > self.log_every_s:
      logging.info(line)
      self._last_log = time.monotonic()


def format_seconds(seconds: float) -> str:
  """12 → '12s', 754 → '12m34s', 7530 → '2h05m'."""
  seconds = int(round(seconds))
  if seconds < 60:
    return f'{seconds}s'
  if seconds < 3600:
    return f'{seconds // 60}m{seconds % 60:02d}s'
  return f'{seconds // 3600}h{seconds % 3600 // 60:02d}m'


class RunProgress:
  """Counts a run's cells (`cell k/N`) and estimates the time the rest will take.

  The estimate for a remaining cell is the mean time of the finished cells of the
  same attack in this run, else the mean of all finished cells (clean passes take
  seconds, C&W minutes: a per-attack mean plans better than one rate).

  Args:
    total: cells planned in the run.
    already_done: cells finished by an earlier run of this workdir.
  """

  def __init__(self, total: int, already_done: int):
    self.total = total
    self.done = already_done
    self._seconds: dict[str, list[float]] = {}
    self._remaining: dict[str, int] = {}

  def plan(self, cells) -> None:
    """Registers the cells still to run (for the per-attack estimate)."""
    for cell in cells:
      self._remaining[cell.attack] = self._remaining.get(cell.attack, 0) + 1

  def start(self, cell) -> str:
    """Logs the cell's start; returns its label for the per-batch progress."""
    e = cell.entry
    label = (
      f'cell {self.done + 1}/{self.total} {e.method} ipc{e.ipc} seed{e.seed} '
      f'{_attack_text(cell)} {cell.mode}'
    )
    logging.info('%s: starting', label)
    return label

  def eta_seconds(self) -> float | None:
    """Seconds the remaining cells should take, None before any cell finished."""
    every = [s for times in self._seconds.values() for s in times]
    if not every:
      return None
    overall = sum(every) / len(every)
    total = 0.0
    for attack, count in self._remaining.items():
      times = self._seconds.get(attack)
      total += count * (sum(times) / len(times) if times else overall)
    return total

  def finish(self, cell, seconds: float, run) -> None:
    """Logs the finished cell's result and the run's ETA."""
    self.done += 1
    self._seconds.setdefault(cell.attack, []).append(seconds)
    self._remaining[cell.attack] = max(self._remaining.get(cell.attack, 1) - 1, 0)
    eta = self.eta_seconds()
    e = cell.entry
    logging.info(
      'cell %d/%d done: %s ipc%s seed%s %s %s: clean %.2f%%, robust %.2f%%, %s; run ETA %s',
      self.done,
      self.total,
      e.method,
      e.ipc,
      e.seed,
      _attack_text(cell),
      cell.mode,
      run.clean_accuracy,
      run.robust_accuracy,
      format_seconds(seconds),
      format_seconds(eta) if eta is not None else '?',
    )


def _attack_text(cell) -> str:
  """`pgd`, or `pgd eps=2/255` for a sweep point."""
  return f'{cell.attack} {cell.sweep}' if cell.sweep else cell.attack


class TrainingProgress:
  """Logs `label: epoch e/E, loss L, r epochs/s, elapsed T, ETA T` as chunks of epochs finish.

  Takes `beard_jax.train.TrainingReport`s (`train_seeds(progress=...)`). One line after
  the first chunk (with the compile time), then one per chunk ending at least
  `log_every_s` after the last line (`train_seeds`' chunks last ~25 s: a line each),
  and one at the end. The speed counts training time after the first
  chunk (whose one epoch also pays the first run's start-up), once there is some.
  """

  def __init__(self, label: str, log_every_s: float = 10.0):
    self.label = label
    self.log_every_s = log_every_s
    self._first = None  # the first chunk's report
    self._last_log = 0.0

  def __call__(self, report) -> None:
    now = time.monotonic()
    first = self._first is None
    finished = report.epochs_done == report.num_epochs
    if not (first or finished or now - self._last_log >= self.log_every_s):
      return
    if first:
      self._first = report
      epochs, seconds = report.epochs_done, report.train_seconds
    else:
      epochs = report.epochs_done - self._first.epochs_done
      seconds = report.train_seconds - self._first.train_seconds
    rate = epochs / max(seconds, 1e-9)
    line = (
      f'{self.label}: epoch {report.epochs_done}/{report.num_epochs}, '
      f'loss {report.mean_loss:.4f}, {rate:.2f} epochs/s, '
      f'elapsed {format_seconds(report.train_seconds + report.compile_seconds)}, '
      f'ETA {format_seconds((report.num_epochs - report.epochs_done) / max(rate, 1e-9))}'
    )
    if first:
      line += f' (compiled in {format_seconds(report.compile_seconds)})'
    logging.info(line)
    self._last_log = now

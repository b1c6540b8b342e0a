"""Terminal progress for long attack passes: which cell, batches done, rate, ETA."""

from __future__ import annotations

import sys
import time

from absl import logging


class CellProgress:
  """Prints `label: batch i/n, rate img/s, ETA` as batches finish.

  On a terminal the line is redrawn in place; in logs (batch jobs) one line is
  logged about every `log_every_s` seconds and at the end.
  """

  def __init__(self, label: str, batch_size: int, log_every_s: float = 30.0):
    self.label = label
    self.batch_size = batch_size
    self.log_every_s = log_every_s
    self._elapsed = 0.0
    self._last_log = time.monotonic()
    self._tty = sys.stderr.isatty()

  def __call__(self, batch_index: int, num_batches: int, batch_seconds: float) -> None:
    self._elapsed += batch_seconds
    done = batch_index + 1
    rate = done * self.batch_size / max(self._elapsed, 1e-9)
    eta = (num_batches - done) * self._elapsed / done
    line = f'{self.label}: batch {done}/{num_batches}, {rate:.1f} img/s, ETA {eta:.0f}s'
    if self._tty:
      end = '\n' if done == num_batches else ''
      sys.stderr.write('\r' + line.ljust(100) + end)
      sys.stderr.flush()
    elif done == num_batches or time.monotonic() - self._last_log > self.log_every_s:
      logging.info(line)
      self._last_log = time.monotonic()

"""An exclusive, advisory lock on a workdir's results file, held for the whole run.

Two runs appending to one results file would interleave their records (each cell
twice). `workdir_lock` takes `fcntl.flock(LOCK_EX | LOCK_NB)` on `.<file>.lock` and
writes the holder's pid and host into it; the kernel releases the lock when the
process ends, however it ends (SIGKILL included), so a stale lock file never
blocks a later run. Sweep tasks lock their own task files and run side by side.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator

from beard_jax.errors import WorkdirBusyError

LOCK_SUFFIX = '.lock'


def _holder(fd: int) -> str:
  """The `pid N on HOST` a lock file names, or 'unknown' when it is empty or unreadable."""
  with contextlib.suppress(OSError, UnicodeDecodeError):
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 200).decode('utf-8').strip()
    if text:
      return text
  return 'unknown'


@contextlib.contextmanager
def workdir_lock(workdir: str, results_file: str) -> Iterator[str]:
  """Holds the lock of `<workdir>/<results_file>` while the `with` block runs.

  Args:
    workdir: the run's directory (created if needed).
    results_file: the records file this run appends to.

  Yields:
    The lock file's path.

  Raises:
    WorkdirBusyError: another process holds the lock; the message names it.
  """
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, '.' + results_file + LOCK_SUFFIX)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise WorkdirBusyError(
        f'{workdir} is in use by another run ({_holder(fd)}, lock {path}); wait for it to '
        'finish or give another --workdir'
      ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f'pid {os.getpid()} on {socket.gethostname()}\n'.encode())
    yield path
  finally:
    os.close(fd)  # Releases the lock.

"""Atomic file writes: a killed write never leaves a file that reads as whole."""

from __future__ import annotations

import contextlib
import os
import tempfile


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
  """Writes `data` to `path` so that readers see either the old file or all of `data`.

  The bytes go to a temporary file in the same directory, are flushed and
  fsynced, then renamed over `path` (atomic on POSIX); the directory is fsynced
  so the rename survives a crash. The file gets the mode `open` would give it
  (0666 less the umask), so shared workdirs stay readable by the group.
  """
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', dir=directory)
  try:
    os.fchmod(fd, 0o666 & ~_current_umask())  # mkstemp makes 0600; honour the umask.
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)
    raise
  _fsync_directory(directory)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
  """`atomic_write_bytes` for UTF-8 text."""
  atomic_write_bytes(path, text.encode('utf-8'))


def append_line_durably(path: str | os.PathLike, line: str) -> None:
  """Appends one line (a complete record) to `path` and fsyncs it.

  A process killed mid-append can leave at most one torn last line; readers of
  such files must drop an unterminated last line (see `read_complete_lines`).
  """
  if '\n' in line:
    raise ValueError('a record line must not contain a newline')
  with open(path, 'a', encoding='utf-8') as f:
    f.write(line + '\n')
    f.flush()
    os.fsync(f.fileno())


def read_complete_lines(path: str | os.PathLike, keep_blank: bool = False) -> list[str]:
  """The newline-terminated lines of `path`; an unterminated (torn) last line is dropped.

  Args:
    path: a text file (a missing one has no lines).
    keep_blank: keep blank lines too, so that list index + 1 is the line number.
  """
  if not os.path.exists(path):
    return []
  with open(path, encoding='utf-8') as f:
    text = f.read()
  lines = text.split('\n')[:-1]
  return lines if keep_blank else [line for line in lines if line.strip()]


def _current_umask() -> int:
  """The process umask (reading it means setting it; it is restored at once)."""
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def _fsync_directory(directory: str) -> None:
  with contextlib.suppress(OSError):
    fd = os.open(directory, os.O_RDONLY)
    try:
      os.fsync(fd)
    finally:
      os.close(fd)

"""The errors of reading PyTorch and pickle files, and how they quote what a file holds.

Every refusal of the reader is a `TorchFileError` (a `ValueError`); one that
would have run code is an `UnsafeFileError`. A value read from a file is quoted
in a message through `describe`, which never recurses deeply, never prints more
than a few dozen characters of one item and never raises.
"""

from __future__ import annotations

import reprlib
from typing import Any


class TorchFileError(ValueError):
  """A file that is not a readable PyTorch save file."""


class UnsafeFileError(TorchFileError):
  """A pickle that asks for something other than tensors, arrays, numbers, lists, dicts."""


_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel, _SHORT_REPR.maxstring, _SHORT_REPR.maxother = 3, 40, 40


def describe(value: Any) -> str:
  """A short repr of a value read from a file; never deep, never failing."""
  try:
    return _SHORT_REPR.repr(value)
  except (ValueError, TypeError, RecursionError):  # e.g. an int of more than 4,300 digits.
    return f'<{type(value).__name__}>'


def exception_text(error: Exception) -> str:
  """`'Type: message'` of an exception raised while reading, or `'Type'` if it has no message."""
  return f'{type(error).__name__}: {error}' if str(error) else type(error).__name__

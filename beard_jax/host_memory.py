"""Keeping freed host memory in the process, so large buffers stop costing page faults.

glibc's malloc serves every allocation over its mmap threshold (at most 32 MB) with fresh
pages and unmaps them on free; the kernel zero-fills each page again at first touch. An
XLA:CPU program allocates its temporaries at every execution and PyTorch allocates every
large tensor anew, so on a CPU both pay about one page fault per 4 KB of temporaries per
call (bench/RESULTS.md: PyTorch's attacks and training ran up to 1.7x faster without
them, ours up to 1.4x). `keep_freed_memory` makes malloc keep what is freed for reuse: one
arena, no mmap'd chunks, no trimming. The cost is memory: the heap never shrinks, and a
freed block is reused only by what fits in it, so a process that is near the machine's
memory can run out where it did not (bench/RESULTS.md: MTT without remat at IPC 10).

It changes speed, never values. Call it before JAX or PyTorch start their thread pools
(first thing in a `main`); `BEARD_KEEP_FREED_MEMORY=0` turns it off, to measure the
difference.
"""

from __future__ import annotations

import ctypes
import os
import sys

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_SETTINGS = (
  (_M_ARENA_MAX, 1),  # Threads share the main heap, which is never unmapped piecemeal.
  (_M_MMAP_MAX, 0),  # Large chunks from the heap too, not from fresh mappings.
  (_M_TRIM_THRESHOLD, 2**31 - 1),  # Never give the heap's free top back to the OS.
  (_M_TOP_PAD, 64 << 20),  # Grow the heap 64 MB at a time.
)
DISABLE_VARIABLE = 'BEARD_KEEP_FREED_MEMORY'


def keep_freed_memory() -> bool:
  """Sets glibc's malloc to reuse freed memory (see the module docstring).

  Returns:
    Whether the settings are in force: False off Linux/glibc, when
    `$BEARD_KEEP_FREED_MEMORY` is `0`, or when the C library refuses one of them.
  """
  if os.environ.get(DISABLE_VARIABLE) == '0' or not sys.platform.startswith('linux'):
    return False
  mallopt = getattr(ctypes.CDLL(None), 'mallopt', None)
  if mallopt is None:
    return False
  return all(mallopt(parameter, value) == 1 for parameter, value in _SETTINGS)

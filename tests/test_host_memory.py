"""`keep_freed_memory`: a freed 256 MB buffer is reused without page faults."""

import os
import subprocess
import sys

import pytest

from beard_jax.host_memory import DISABLE_VARIABLE

# Touches a 256 MB malloc'd buffer, frees it, then counts the page faults of touching a second
# one. Plain malloc, as XLA:CPU and PyTorch allocate (numpy would ask for huge pages).
_PROBE = """
import ctypes, resource
from beard_jax.host_memory import keep_freed_memory
applied = keep_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def touch_and_free(size):
  buffer = libc.malloc(size)
  ctypes.memset(buffer, 1, size)
  libc.free(buffer)
touch_and_free(1 << 28)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
touch_and_free(1 << 28)
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
_PAGES = (1 << 28) // 4096  # 65,536 pages of 4 KB in 256 MB.


def _probe(keep: bool) -> tuple[str, int]:
  env = {**os.environ, DISABLE_VARIABLE: '1' if keep else '0'}
  out = subprocess.run(
    [sys.executable, '-c', _PROBE], env=env, capture_output=True, text=True, check=True
  ).stdout.split()
  return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc mallopt only')
def test_freed_buffers_are_reused_without_page_faults():
  applied, faults = _probe(keep=True)
  assert applied == 'True'
  assert faults < _PAGES // 10
  # Without it, glibc maps the second buffer afresh: about one fault per page.
  applied, faults = _probe(keep=False)
  assert applied == 'False'
  assert faults > _PAGES // 2

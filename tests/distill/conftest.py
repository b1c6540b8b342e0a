"""Tiny distillation problems shared by the tests (toy 8×8 images, 3 classes, width-8 nets).

Compiling a distillation step takes seconds on this CPU, so tests reuse the same
shapes and static configs, and jit caches their programs across tests.
"""

from __future__ import annotations

import pytest

from beard_jax.distill import real_data
from tests.distill.toy import toy_real_set


@pytest.fixture(scope='session')
def toy_data():
  images, labels = toy_real_set()
  return real_data.index_by_class(images, labels, 3)

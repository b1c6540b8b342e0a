"""What produced a result: library versions and a stable hash of the config."""

from __future__ import annotations

import hashlib
import json
import platform
from importlib import metadata
from typing import Any

import numpy as np

_PACKAGES = ('beard-jax', 'jax', 'jaxlib', 'flax', 'optax', 'numpy')


def library_versions() -> dict[str, str]:
  """Versions of Python, the JAX stack, the backend and its matmul precision, for every record."""
  versions = {'python': platform.python_version()}
  for package in _PACKAGES:
    try:
      versions[package] = metadata.version(package)
    except metadata.PackageNotFoundError:
      versions[package] = 'not installed'
  import jax  # Imported late: this module is also used by tools that need no JAX.

  versions['backend'] = jax.default_backend()
  versions['devices'] = f'{jax.device_count()}x {jax.devices()[0].device_kind}'
  # 'default' lets XLA use TF32 for float32 convolutions on NVIDIA GPUs; 'highest' forbids it.
  versions['matmul_precision'] = str(jax.config.jax_default_matmul_precision or 'default')
  return versions


def config_hash(config: dict[str, Any]) -> str:
  """A short, stable hash of a JSON-able config (key order does not matter)."""
  blob = json.dumps(config, sort_keys=True, separators=(',', ':'), default=str)
  return hashlib.sha256(blob.encode('utf-8')).hexdigest()[:16]


def file_sha256(path: str) -> str:
  """The sha256 of a file's bytes, read in 1 MiB chunks."""
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      digest.update(chunk)
  return digest.hexdigest()


def arrays_sha256(*arrays) -> str:
  """A sha256 of arrays' dtypes, shapes and bytes (C order): equal iff their contents are."""
  digest = hashlib.sha256()
  for array in arrays:
    array = np.ascontiguousarray(array)
    digest.update(f'{array.dtype.str}{array.shape};'.encode())
    digest.update(array.tobytes())
  return digest.hexdigest()

"""Device meshes: the batch axis of attacks and the seed axis of training, sharded.

The same jitted programs run on one device or many: inputs are placed with a
`NamedSharding` over a 1-D mesh and `jit` partitions the work (no pmap). On
several hosts, call `initialize_distributed` first; `jax.devices()` then lists
every host's devices and the mesh spans them all.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

BATCH_AXIS = 'batch'
SEED_AXIS = 'seeds'


def make_mesh(axis_name: str, num_devices: int | None = None) -> Mesh:
  """A 1-D mesh over the first `num_devices` devices (all, by default)."""
  devices = jax.devices()
  if num_devices is not None:
    if not 1 <= num_devices <= len(devices):
      raise ValueError(f'asked for {num_devices} devices, {len(devices)} are available')
    devices = devices[:num_devices]
  return Mesh(np.asarray(devices), (axis_name,))


def leading_axis_sharding(mesh: Mesh) -> NamedSharding:
  """Splits axis 0 of an array over the mesh's only axis."""
  return NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))


def replicated(mesh: Mesh) -> NamedSharding:
  """The whole array on every device of the mesh."""
  return NamedSharding(mesh, PartitionSpec())


def check_divisible(size: int, mesh: Mesh, what: str) -> None:
  """Raises a clear error when `size` cannot be split evenly over the mesh."""
  if size % mesh.size:
    raise ValueError(f'{what} ({size}) must be a multiple of the number of devices ({mesh.size})')


def initialize_distributed(coordinator_address: str, num_processes: int, process_id: int) -> None:
  """Joins a multi-host run (`jax.distributed.initialize`); a no-op for one process."""
  if num_processes > 1:
    jax.distributed.initialize(
      coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
    )

"""Device meshes: the batch axis of attacks and the seed axis of training, sharded.

The same jitted programs run on one device or many: inputs are placed with a
`NamedSharding` over a 1-D mesh and `jit` partitions the work (no pmap). On
several hosts, call `initialize_distributed` first; `jax.devices()` then lists
every host's devices and the mesh spans them all. Every process runs the same
program; only the primary process (index 0) writes files, and the others wait at
a `barrier` where they read what it wrote (the workdir must be shared storage).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
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


def global_array(array: Any, target: NamedSharding) -> jax.Array:
  """`array` (the same host value on every process) placed with `target` across all processes.

  Works where `jax.device_put` cannot: each process copies only the shards its own devices
  hold. `array` may be a numpy array or a `jax.Array` (typed PRNG keys included).
  """
  if isinstance(array, jax.Array) and jax.dtypes.issubdtype(array.dtype, jax.dtypes.prng_key):
    data = global_array(jax.random.key_data(array), target)
    return jax.random.wrap_key_data(data, impl=jax.random.key_impl(array))
  array = np.asarray(array)
  return jax.make_array_from_callback(array.shape, target, lambda index: array[index])


def gather_across_processes(tree: Any) -> Any:
  """Every leaf readable on this process: leaves sharded over several processes become
  whole numpy arrays on each; every other leaf is returned as it is."""

  def gather(leaf):
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
      return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
    return leaf

  return jax.tree.map(gather, tree)


def is_primary_process() -> bool:
  """True on the process that writes files (process 0; the only one without `jax.distributed`)."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits until every process reaches the barrier `name`; a no-op for one process."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)

"""The model pool on disk: bit-exact round trip, atomic writes, corrupt files refused."""

import json
import os

import jax
import numpy as np
import pytest

from beard_jax.data.specs import get_dataset_spec
from beard_jax.models import ConvNet, init_params
from beard_jax.models.checkpoints import (
  CheckpointError,
  list_checkpoints,
  load_checkpoint,
  save_checkpoint,
)


@pytest.fixture
def params():
  return init_params(ConvNet(10, width=8), get_dataset_spec('cifar10'), jax.random.key(0))


def test_round_trip_is_bit_exact(tmp_path, params):
  stem = str(tmp_path / 'DC_cifar10_ipc10_seed0')
  save_checkpoint(stem, params, {'method': 'DC', 'dataset': 'cifar10', 'ipc': 10, 'seed': 0})
  loaded, sidecar = load_checkpoint(stem + '.json')
  assert sidecar['method'] == 'DC' and sidecar['ipc'] == 10
  flat_a = jax.tree_util.tree_leaves_with_path(params)
  flat_b = jax.tree_util.tree_leaves_with_path(loaded)
  assert [p for p, _ in flat_a] == [p for p, _ in flat_b]
  for (_, a), (_, b) in zip(flat_a, flat_b, strict=False):
    assert np.asarray(a).dtype == b.dtype
    np.testing.assert_array_equal(np.asarray(a), b)
  assert list_checkpoints(tmp_path) == [stem]


def test_corrupt_parameters_are_refused(tmp_path, params):
  stem = str(tmp_path / 'm')
  save_checkpoint(stem, params, {'method': 'DC'})
  blob = bytearray(open(stem + '.msgpack', 'rb').read())
  blob[len(blob) // 2] ^= 0xFF
  open(stem + '.msgpack', 'wb').write(bytes(blob))
  with pytest.raises(CheckpointError, match='does not match the sidecar'):
    load_checkpoint(stem)


def test_truncated_and_hostile_files_are_refused(tmp_path, params):
  stem = str(tmp_path / 'm')
  save_checkpoint(stem, params, {'method': 'DC'})
  # A parameter file replaced by garbage whose hash is written into the sidecar too:
  # it must still fail to decode rather than load as something else.
  garbage = b'\xc1' * 64
  open(stem + '.msgpack', 'wb').write(garbage)
  sidecar = json.load(open(stem + '.json'))
  import hashlib

  sidecar.update(params_sha256=hashlib.sha256(garbage).hexdigest(), params_bytes=len(garbage))
  json.dump(sidecar, open(stem + '.json', 'w'))
  with pytest.raises(CheckpointError, match='not a msgpack'):
    load_checkpoint(stem)
  os.remove(stem + '.msgpack')
  with pytest.raises(CheckpointError, match='missing'):
    load_checkpoint(stem)


def test_a_killed_write_leaves_nothing_loadable(tmp_path, params, monkeypatch):
  """The parameters are written, then the process dies before the sidecar."""
  from beard_jax.models import checkpoints

  real_write = checkpoints.atomic_write_text

  def die(*args, **kwargs):
    raise KeyboardInterrupt('killed')

  monkeypatch.setattr(checkpoints, 'atomic_write_text', die)
  with pytest.raises(KeyboardInterrupt):
    save_checkpoint(str(tmp_path / 'm'), params, {'method': 'DC'})
  monkeypatch.setattr(checkpoints, 'atomic_write_text', real_write)
  assert list_checkpoints(tmp_path) == []
  with pytest.raises(CheckpointError, match='no sidecar'):
    load_checkpoint(str(tmp_path / 'm'))
  # No temporary files are left behind either.
  assert sorted(os.listdir(tmp_path)) == ['m.msgpack']


def test_nan_parameters_are_refused(tmp_path, params):
  bad = jax.tree_util.tree_map(lambda x: np.full_like(np.asarray(x), np.nan), params)
  save_checkpoint(str(tmp_path / 'm'), bad, {'method': 'DC'})
  with pytest.raises(CheckpointError, match='NaN'):
    load_checkpoint(str(tmp_path / 'm'))


def test_pools_in_folders_with_brackets(tmp_path, params):
  """A pool path is listed literally: `[1]` is part of the name, not a glob pattern."""
  from beard_jax.models.pool import discover_models

  pool = tmp_path / 'pool[1]'
  pool.mkdir()
  stem = str(pool / 'DC_cifar10_ipc10_seed0')
  save_checkpoint(stem, params, {'method': 'DC', 'dataset': 'cifar10', 'ipc': 10, 'seed': 0})
  beard = pool / 'DM_ConvNet_CIFAR10_50_None.pth'
  beard.write_bytes(b'')  # Discovery reads the name only.
  (pool / '.hidden.json').write_text('{}')
  assert list_checkpoints(pool) == [stem]
  found = [(e.kind, e.method, e.ipc, e.path) for e in discover_models(str(pool))]
  assert found == [('checkpoint', 'DC', 10, stem), ('beard_pth', 'DM', 50, str(beard))]

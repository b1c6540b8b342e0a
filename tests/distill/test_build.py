"""build_distilled_set end to end: pool files both formats, provenance, determinism, resume.

Real CIFAR-10 training images (8 per class) and tiny nets (width 8, depth 1) keep
every run short; configs are shared so that the jitted programs compile once.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import shutil
from typing import NamedTuple

import jax
import numpy as np
import pytest

from beard_jax.data import dataset_pool
from beard_jax.data.specs import get_dataset_spec
from beard_jax.distill import build_distilled_set, get_method, method_config, resumable
from beard_jax.distill.pool_files import pool_paths

SPEC = get_dataset_spec('cifar10')
TINY_NET = dict(net_width=8, net_depth=1)
HPARAMS = {
  'random': {},
  'herding': dict(TINY_NET, feature_epochs=1),
  'kcenter': dict(TINY_NET, feature_net='random'),
  'dc': dict(TINY_NET, batch_real=4, outer_loop=2, inner_loop=1),
  'dsa': dict(TINY_NET, batch_real=4, outer_loop=2, inner_loop=1, dsa_strategy='crop_flip'),
  'dm': dict(TINY_NET, dsa_strategy='crop_flip'),
  'idm': dict(TINY_NET, dsa_strategy='crop_flip', net_num=4, trained_bs=16, model_train_steps=1),
  'bacon': dict(TINY_NET, dsa_strategy='crop_flip', net_num=4, trained_bs=16, model_train_steps=1),
  'mtt': dict(
    TINY_NET,
    dsa_strategy='crop_flip',
    syn_steps=2,
    expert_epochs=1,
    max_start_epoch=2,
    num_experts=2,
    expert_train_epochs=2,
    expert_batch=32,
  ),
}
ITERATIONS = {'dc': 6, 'dsa': 6, 'dm': 6, 'idm': 6, 'bacon': 6, 'mtt': 6}


@pytest.fixture(scope='module')
def real_subset(real_data_path):
  with np.load(real_data_path('cifar10/train_1k_per_class.npz')) as archive:
    images, labels = archive['images'], archive['labels']
  index = np.concatenate([np.flatnonzero(labels == c)[:8] for c in range(10)])
  return images[index], labels[index]


def _build(method, real_subset, out_dir, key=0, **kwargs):
  kwargs.setdefault('iterations', ITERATIONS.get(method))
  return build_distilled_set(
    method, SPEC, *real_subset, 2, key=key, out_dir=out_dir, hparams=HPARAMS[method], **kwargs
  )


# DM's round trip runs by default; the other methods write through the same pool_files
# code (their selection/optimisation is tested in their own modules), so they are slow.
@pytest.mark.parametrize(
  'method', [m if m == 'dm' else pytest.param(m, marks=pytest.mark.slow) for m in sorted(HPARAMS)]
)
def test_both_formats_load_to_the_same_set_with_provenance(method, real_subset, tmp_path):
  torch = pytest.importorskip('torch')
  path = pathlib.Path(_build(method, real_subset, tmp_path))
  name = get_method(method).pool_name
  assert dataset_pool.find_dataset_pool(tmp_path, 'cifar10', 2) == {name: path}
  npz = dataset_pool.find_dataset_pool(tmp_path / 'npz', 'cifar10', 2)[name]
  from_pt = dataset_pool.load_distilled_set(path, 'cifar10')
  from_npz = dataset_pool.load_distilled_set(npz, 'cifar10')
  np.testing.assert_array_equal(from_pt.images, from_npz.images)  # Bit for bit.
  np.testing.assert_array_equal(from_pt.labels, from_npz.labels)
  decoded = 4 if method in ('idm', 'bacon') else 1  # 4-in-1 images, split by the reader.
  assert from_pt.images.shape == (20 * decoded, 32, 32, 3) and from_pt.images.dtype == np.float32
  assert from_pt.method == name and from_pt.ipc == 2
  np.testing.assert_array_equal(from_pt.labels, np.tile(np.repeat(np.arange(10), 2), decoded))
  raw = torch.load(path, weights_only=True)  # BEARD's own loader.
  images, labels = raw['data'][0]
  assert images.dtype == torch.float32 and tuple(images.shape) == (20, 3, 32, 32)
  assert labels.dtype == torch.int64 and labels.tolist() == np.repeat(np.arange(10), 2).tolist()
  mean, std = np.asarray(SPEC.mean, np.float32), np.asarray(SPEC.std, np.float32)
  stored = np.load(npz)['images']
  np.testing.assert_array_equal(images.numpy().transpose(0, 2, 3, 1) * std + mean, stored)
  if method in ('random', 'herding', 'kcenter'):  # Real images, unchanged.
    real_pixels = real_subset[0].astype(np.float32) / 255
    for image in stored:
      assert np.abs(real_pixels - image).max(axis=(1, 2, 3)).min() < 1e-5
  sidecar = json.loads(path.with_suffix('.json').read_text())
  assert sidecar == json.loads(npz.with_suffix('.json').read_text())
  assert (sidecar['method'], sidecar['dataset'], sidecar['ipc'], sidecar['seed']) == (
    name,
    'cifar10',
    2,
    0,
  )
  assert sidecar['iterations'] == ITERATIONS.get(method, 0)
  assert sidecar['hyperparameters'] == method_config(method, SPEC, 2, HPARAMS[method])._asdict()
  assert sidecar['real_data']['num_images'] == 80 and len(sidecar['real_data']['sha256']) == 64
  assert sidecar['versions']['jax'] == jax.__version__ and sidecar['wall_seconds'] > 0
  assert sidecar['files']['sha256']['pt'] == hashlib.sha256(path.read_bytes()).hexdigest()
  assert sidecar['factorized_4in1'] == (method in ('idm', 'bacon'))
  assert not pool_paths(tmp_path, name, SPEC, 2).checkpoint.exists()


@pytest.mark.parametrize('method', ['dc', 'dsa', 'dm', 'idm', 'bacon', 'mtt'])
def test_same_key_same_bits_and_interrupted_runs_resume_to_them(method, real_subset, tmp_path):
  reference = pathlib.Path(_build(method, real_subset, tmp_path / 'a'))
  again = pathlib.Path(_build(method, real_subset, tmp_path / 'b'))
  assert reference.read_bytes() == again.read_bytes()

  class Interrupt(Exception):
    pass

  def stop_at_4(report):
    if report.iteration >= 4:
      raise Interrupt

  interrupted = tmp_path / 'c'
  with pytest.raises(Interrupt):
    _build(method, real_subset, interrupted, checkpoint_every=2, progress=stop_at_4)
  checkpoint = pool_paths(interrupted, get_method(method).pool_name, SPEC, 2).checkpoint
  assert (
    checkpoint.exists()
    and not (interrupted / get_method(method).pool_name / reference.name).exists()
  )
  reports = []
  resumed = pathlib.Path(_build(method, real_subset, interrupted, progress=reports.append))
  assert reports[0].iteration > 4 and resumed.read_bytes() == reference.read_bytes()
  assert not checkpoint.exists()
  other = pathlib.Path(_build(method, real_subset, tmp_path / 'd', key=1))
  assert other.read_bytes() != reference.read_bytes()
  extended = tmp_path / 'e'
  _build(method, real_subset, extended, iterations=ITERATIONS[method] - 2, keep_checkpoint=True)
  reports = []
  longer = pathlib.Path(_build(method, real_subset, extended, progress=reports.append))
  assert reports[0].iteration > ITERATIONS[method] - 2
  assert longer.read_bytes() == reference.read_bytes()


def test_a_finished_set_is_not_rebuilt_and_foreign_checkpoints_are_refused(real_subset, tmp_path):
  _build('dm', real_subset, tmp_path)
  reports = []
  _build('dm', real_subset, tmp_path, progress=reports.append)
  assert reports == []  # Same run, already written: nothing ran.

  def stop(report):
    raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):
    _build('dm', real_subset, tmp_path / 'x', checkpoint_every=1, progress=stop)
  foreign = pool_paths(tmp_path / 'x', 'DM', SPEC, 2).checkpoint
  target = pool_paths(tmp_path / 'y', 'DM', SPEC, 2).checkpoint
  target.parent.mkdir(parents=True)
  shutil.copy(foreign, target)
  with pytest.raises(ValueError, match='checkpoint of another run'):
    _build('dm', real_subset, tmp_path / 'y', key=5)


def test_bad_names_list_the_choices(real_subset, tmp_path):
  with pytest.raises(ValueError, match=r"unknown distillation method 'dd'.*'dc', 'dm', 'dsa'"):
    build_distilled_set('dd', SPEC, *real_subset, 1, key=0, out_dir=tmp_path)
  with pytest.raises(ValueError, match=r"unknown dm hyperparameters \['lr'\]; choose from"):
    method_config('dm', SPEC, 1, {'lr': 1.0})
  with pytest.raises(ValueError, match='IPC 9 needs'):
    build_distilled_set('random', SPEC, *real_subset, 9, key=0, out_dir=tmp_path)


class _Counter(NamedTuple):
  iteration: np.int32


def test_a_non_finite_loss_stops_the_run_before_anything_is_saved(tmp_path):
  def run_chunk(state, stop):
    return state._replace(iteration=np.int32(stop)), np.float32(np.nan), np.float32(1)

  options = resumable.RunOptions(str(tmp_path / 'ck.npz'), 2, 'f', 'test', lambda report: None)
  with pytest.raises(FloatingPointError, match='loss nan at iterations 0..0; nothing written'):
    resumable.run_iterations(run_chunk, _Counter(np.int32(0)), 4, options)
  assert not (tmp_path / 'ck.npz').exists()


_CHILD = """
import sys, time
import numpy as np
from tests.distill import test_build as t

with np.load(sys.argv[1]) as archive:
  images, labels = archive['images'], archive['labels']
index = np.concatenate([np.flatnonzero(labels == c)[:8] for c in range(10)])
t._build('dm', (images[index], labels[index]), sys.argv[2], checkpoint_every=2,
         progress=lambda report: time.sleep(1.0))
"""


@pytest.mark.slow
def test_sigkilled_process_resumes_to_the_uninterrupted_set(real_subset, real_data_path, tmp_path):
  """A real SIGKILL of a distilling process once its first checkpoint exists, then a rerun."""
  import os
  import signal
  import subprocess
  import sys
  import time

  repo = pathlib.Path(__file__).resolve().parents[2]
  out = tmp_path / 'killed'
  checkpoint = pool_paths(out, 'DM', SPEC, 2).checkpoint
  child = subprocess.Popen(
    [sys.executable, '-c', _CHILD, str(real_data_path('cifar10/train_1k_per_class.npz')), str(out)],
    cwd=repo,
    env={**os.environ, 'PYTHONPATH': str(repo)},
  )
  deadline = time.monotonic() + 300
  while not checkpoint.exists() and child.poll() is None and time.monotonic() < deadline:
    time.sleep(0.05)
  assert checkpoint.exists(), 'the child never wrote a checkpoint'
  child.send_signal(signal.SIGKILL)
  assert child.wait(timeout=60) == -signal.SIGKILL
  assert not pool_paths(out, 'DM', SPEC, 2).pt.exists()
  resumed = pathlib.Path(_build('dm', real_subset, out))
  reference = pathlib.Path(_build('dm', real_subset, tmp_path / 'whole'))
  assert resumed.read_bytes() == reference.read_bytes()


def test_progress_lines_give_seconds_per_iteration_when_iterations_are_slow(caplog):
  log = resumable.LogProgress(every_s=0.0)
  with caplog.at_level('INFO'):
    log(resumable.Progress('MTT experts', 1, 3, 2.0, 0.004, 500.0))
    log(resumable.Progress('DM', 10, 20, 1.0, 12.3, 0.8))
  assert '250.0 s/it, ETA 8m20s' in caplog.text and '12.30 it/s' in caplog.text

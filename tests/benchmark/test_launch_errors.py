"""launch.py as a new user meets it: one line on stderr, exit code 2, nothing left behind."""

import os
import subprocess

import jax
import pytest
from pool_fixtures import REPO, launch_command, write_model_pool

from beard_jax.data.specs import get_dataset_spec
from beard_jax.io.locks import workdir_lock
from beard_jax.models import ConvNet, init_params
from beard_jax.models.checkpoints import save_checkpoint


@pytest.fixture(scope='module')
def model_pool(tmp_path_factory):
  return write_model_pool(tmp_path_factory.mktemp('pool'), ['DC'])


def _launch(args, cwd=REPO):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  return subprocess.run(args, env=env, capture_output=True, text=True, cwd=cwd, timeout=300)


def _assert_one_line_error(result, message):
  assert result.returncode == 2, result.stderr[-2000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith('launch.py: error:')]
  assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
  assert 'Traceback' not in result.stderr


@pytest.mark.parametrize(
  ('flag', 'message'),
  [
    ('--attacks=fgsm,pdg', "unknown --attacks 'pdg'"),
    ('--num_examples=-9990', '--num_examples must be >= 0, got -9990'),
    ('--data_dir=/no/such/dir', '--data_dir=/no/such/dir is not a directory'),
    ('--data_dir=/', 'no cifar10 test data under / (looked at npz: /cifar10/test.npz'),
    ('--data_dir=/', 'or add --download to fetch the official archive into --data_dir'),
  ],
)
def test_a_bad_flag_is_one_line_and_leaves_no_workdir(model_pool, tmp_path, flag, message):
  workdir = tmp_path / 'w'
  command = launch_command(model_pool, os.environ.get('BEARD_DATA_DIR', '.'), workdir, flag)
  # From another directory: launch.py finds its default config itself.
  _assert_one_line_error(_launch(command, cwd=tmp_path), message)
  assert not workdir.exists()


def test_a_pool_without_the_wanted_models_leaves_no_config(beard_data_dir, tmp_path):
  empty = tmp_path / 'empty_pool'
  empty.mkdir()
  workdir = tmp_path / 'w'
  result = _launch(launch_command(empty, beard_data_dir, workdir))
  _assert_one_line_error(result, 'no models for dataset cifar10, IPC 10')
  assert not (workdir / 'config.json').exists()


def test_a_busy_workdir_is_refused_naming_the_holder(model_pool, beard_data_dir, tmp_path):
  with workdir_lock(str(tmp_path), 'results.jsonl'):
    result = _launch(launch_command(model_pool, beard_data_dir, tmp_path))
  _assert_one_line_error(result, f'in use by another run (pid {os.getpid()}')


def test_a_changed_model_file_is_refused_not_reused(beard_data_dir, tmp_path):
  (tmp_path / 'pool').mkdir()
  pool = write_model_pool(tmp_path / 'pool', ['DC'])
  workdir = tmp_path / 'w'
  first = _launch(launch_command(pool, beard_data_dir, workdir))
  assert first.returncode == 0, first.stderr[-2000:]
  assert 'report:' in first.stdout  # The summary ends with the report's path.
  spec = get_dataset_spec('cifar10')
  other = init_params(ConvNet(10), spec, jax.random.key(99))
  sidecar = {'method': 'DC', 'dataset': 'cifar10', 'ipc': 10, 'seed': 0, 'training': 'standard'}
  save_checkpoint(str(pool / 'DC_seed0'), other, sidecar)
  _assert_one_line_error(
    _launch(launch_command(pool, beard_data_dir, workdir)), 'was computed from another model'
  )


def test_an_unreadable_set_file_is_one_line_naming_it_and_leaves_no_config(
  beard_data_dir, tmp_path
):
  bad = tmp_path / 'my_set.npz'
  bad.write_text('not an archive')
  workdir = tmp_path / 'w'
  command = launch_command(tmp_path, beard_data_dir, workdir)
  command = [c for c in command if not c.startswith('--model_pool')]
  result = _launch([*command, f'--distilled_set={bad}'])
  _assert_one_line_error(result, f'{bad}: not a plain .npz of images and labels')
  assert not (workdir / 'config.json').exists()

"""`--transfer`: the source × target records, BEARD's left-clean quirk, the matrices."""

import subprocess

import pytest
from pool_fixtures import beard_checkpoint_pool, launch_command, launch_ok, read_records

from beard_jax.benchmark.plan import resolve_plan
from beard_jax.errors import ConfigError
from beard_jax.leaderboard.transfer import transfer_frame, transfer_matrix
from beard_jax.metrics import compute_metrics
from configs import default

CHECKPOINTS = ('BACON_ConvNet_CIFAR10_50_None_0.6995.pth', 'DC_ConvNet_CIFAR10_50_None.pth')


@pytest.fixture(scope='module')
def transfer_run(real_data_path, tmp_path_factory):
  """BEARD's BACON and DC checkpoints, `beard` protocol, FGSM and DeepFool, targeted (the
  mode where BEARD's transfer loop leaves DeepFool's images clean)."""
  root = tmp_path_factory.mktemp('transfer')
  pool = beard_checkpoint_pool(root, real_data_path, CHECKPOINTS)
  workdir = root / 'w'
  command = launch_command(
    pool, real_data_path('.'), workdir, '--ipc=50', '--protocol=beard',
    '--attacks=fgsm,deepfool', '--modes=targeted', '--transfer',
  )  # fmt: skip
  return command, launch_ok(command), workdir, read_records(workdir)


def test_every_source_is_scored_on_every_model_and_the_diagonal_is_white_box(transfer_run):
  _, _, _, records = transfer_run
  white = {(r['method'], r['attack'], r['targeted']): r for r in records if not r['transfer_to']}
  moved = [r for r in records if r['transfer_to']]
  # 2 sources x (FGSM, DeepFool) x 2 targets.
  assert len(moved) == 2 * 2 * 2
  for r in moved:
    target = r['transfer_to'].split('/')[0]
    assert r['clean_acc'] == white[(target, 'clean', r['targeted'])]['clean_acc']
    box = white.get((r['method'], r['attack'], r['targeted']))
    if target == r['method'] and box:  # The same adversarials, scored in another program:
      assert r['boundary_examples'] == box['boundary_examples']  # equal up to rounding ties
      low, high = box['robust_acc_range']  # (DeepFool under beard leaves some on the boundary).
      assert low <= r['robust_acc'] <= high
      assert r['robust_acc'] == box['robust_acc'] or box['boundary_examples']
  assert compute_metrics(records) == compute_metrics([r for r in records if not r['transfer_to']])


def test_beard_scores_targeted_deepfool_on_clean_images_as_its_transfer_loop_does(transfer_run):
  _, _, _, records = transfer_run
  assert not [
    r for r in records if r['attack'] == 'deepfool' and r['targeted'] and not r['transfer_to']
  ]
  clean = [r for r in records if r['attack'] == 'deepfool' and r['targeted'] and r['transfer_to']]
  assert len(clean) == 4
  for r in clean:
    assert r['robust_acc'] == r['clean_acc'] and r['mean_linf'] == 0.0 and r['hparams'] == {}


def test_the_report_holds_the_matrices_and_a_rerun_adds_nothing(transfer_run):
  command, env, workdir, records = transfer_run
  report = (workdir / 'report.md').read_text()
  assert '## Transfer (`--transfer`)' in report and '| BACON IPC 50 |' in report
  assert "Per target, as BEARD's black-box scripts compute them" in report
  assert 'BACON/ipc50/seed0/standard' in (workdir / 'leaderboards/transfer_metrics.csv').read_text()
  page = (workdir / 'leaderboards' / 'leaderboards.html').read_text()
  assert (workdir / 'leaderboards' / 'transfer_beard_targeted.png').stat().st_size > 10_000
  assert 'alt="transfer beard targeted"' in page  # The HTML page embeds the heatmaps.
  result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert read_records(workdir) == records


def test_the_matrix_averages_seed_pairs():
  def record(source_seed, target, target_seed, acc):
    to = f'{target}/ipc10/seed{target_seed}/standard'
    fields = dict(protocol='standard', training='standard', attack='pgd', targeted=False)
    return dict(method='DM', ipc=10, seed=source_seed, transfer_to=to, robust_acc=acc,
                clean_acc=50.0, **fields)  # fmt: skip

  records = [record(0, 'DC', 0, 10.0), record(1, 'DC', 0, 30.0), record(0, 'DM', 1, 4.0)]
  frame = transfer_frame(records)
  matrix = transfer_matrix(frame, 'standard', 'standard', 'pgd', 'untargeted')
  assert matrix.loc['DM IPC 10', 'DC IPC 10'] == 20.0
  assert matrix.loc['DM IPC 10', 'DM IPC 10'] == 4.0
  row = frame[frame['target'] == 'DC IPC 10'].iloc[0]
  assert (row['robust_std'], row['pairs']) == (10.0, 2)


def test_transfer_in_one_task_of_many_is_refused():
  config = default.get_config()
  config.update(model_pool='.', transfer=True, num_tasks=2)
  with pytest.raises(ConfigError, match='--transfer scores every model of the pool'):
    resolve_plan(config)

"""BEARD's query evaluation end to end: Square in both modes, its `Spsa` branch as its code runs."""

import pytest
from pool_fixtures import beard_checkpoint_pool, launch_command, launch_ok, read_records


@pytest.mark.slow  # Square's 5,000 queries and AutoAttack on BACON's checkpoint: about 2 min quiet.
def test_beard_query_suite_runs_as_beards_code(real_data_path, tmp_path):
  pool = beard_checkpoint_pool(
    tmp_path, real_data_path, ['BACON_ConvNet_CIFAR10_50_None_0.6995.pth']
  )
  workdir = tmp_path / 'w'
  command = launch_command(
    pool, real_data_path('.'), workdir, '--ipc=50', '--protocol=beard', '--attacks=spsa,square',
    num_examples=8,
  )  # fmt: skip
  launch_ok(command)
  records = {(r['attack'], r['targeted']): r for r in read_records(workdir)}
  assert records[('spsa', False)]['runs_as'] == 'autoattack'
  assert (
    records[('spsa', True)]['runs_as'] == 'spsa'
    and records[('spsa', True)]['hparams']['steps'] == 1
  )
  assert records[('square', True)]['hparams']['n_queries'] == 5000
  for r in records.values():  # (Under beard the [0, 1] clamp of normalised tensors moves
    assert r['robust_acc'] <= r['clean_acc']  # pixels far beyond eps: no ball to check.)
    assert r['perturbation_space'] == 'normalized'
  assert 'Square targeted' in (workdir / 'leaderboards' / 'leaderboards.md').read_text()

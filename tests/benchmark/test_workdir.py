"""A workdir that cannot rot: one run at a time, duplicates named and repaired, inputs bound,
sweeps merged only when whole, files as readable as the umask says."""

import builtins
import json
import os
import signal
import subprocess
import sys
import types

import pytest

from beard_jax import provenance
from beard_jax.benchmark.plan import Cell, resolve_plan
from beard_jax.benchmark.progress import CellProgress, RunProgress
from beard_jax.benchmark.run import merge_task_results
from beard_jax.errors import (
  DuplicateRecordError,
  IncompleteSweepError,
  StaleInputError,
  WorkdirBusyError,
)
from beard_jax.evaluate.results import ResultStore, cell_key, repair_duplicates
from beard_jax.io.atomic import atomic_write_text
from beard_jax.io.locks import workdir_lock
from beard_jax.models.pool import ModelEntry
from configs import default


def _record(attack, targeted=False, method='DC', **extra):
  return dict(
    method=method,
    dataset='cifar10',
    ipc=10,
    seed=0,
    protocol='standard',
    training='standard',
    attack=attack,
    targeted=targeted,
    robust_acc=1.0,
    **extra,
  )


def test_a_second_run_is_refused_naming_the_holder(tmp_path):
  with workdir_lock(str(tmp_path), 'results.jsonl'):
    with pytest.raises(WorkdirBusyError, match=rf'in use by another run \(pid {os.getpid()} on '):
      with workdir_lock(str(tmp_path), 'results.jsonl'):
        pass
    with workdir_lock(str(tmp_path), 'results.task-0-of-2.jsonl'):
      pass  # Sweep tasks lock their own files.
  with workdir_lock(str(tmp_path), 'results.jsonl'):
    pass  # Released on exit.


def test_a_killed_holder_leaves_no_lock_behind(tmp_path):
  holder = subprocess.Popen(
    [
      sys.executable,
      '-c',
      'import sys, time; from beard_jax.io.locks import workdir_lock\n'
      'with workdir_lock(sys.argv[1], "results.jsonl"):\n'
      '  print("locked", flush=True); time.sleep(60)',
      str(tmp_path),
    ],
    stdout=subprocess.PIPE,
    text=True,
  )
  assert holder.stdout.readline().strip() == 'locked'
  with pytest.raises(WorkdirBusyError, match=f'pid {holder.pid}'):
    with workdir_lock(str(tmp_path), 'results.jsonl'):
      pass
  holder.send_signal(signal.SIGKILL)
  holder.wait()
  with workdir_lock(str(tmp_path), 'results.jsonl'):
    pass


def _write_lines(path, records):
  path.write_text(''.join(json.dumps(r) + '\n' for r in records))


def test_duplicates_are_named_with_file_and_lines_then_repaired(tmp_path):
  ResultStore(str(tmp_path), {}, 'h')  # writes config.json
  records = [_record('clean'), _record('fgsm'), _record('clean'), _record('fgsm', True)]
  _write_lines(tmp_path / 'results.jsonl', [dict(r, config_hash='h') for r in records])
  with pytest.raises(DuplicateRecordError, match=r'results\.jsonl records 1 cell.*lines \[1, 3\]'):
    ResultStore(str(tmp_path), {}, 'h')
  aside = repair_duplicates(str(tmp_path / 'results.jsonl'))
  store = ResultStore(str(tmp_path), {}, 'h')
  assert [(r['attack'], r['targeted']) for r in store.records] == [
    ('clean', False),
    ('fgsm', False),
    ('fgsm', True),
  ]
  moved = [json.loads(line) for line in open(aside)]
  assert [m['attack'] for m in moved] == ['clean']
  assert repair_duplicates(str(tmp_path / 'results.jsonl')) is None


def test_a_line_that_is_not_json_is_named(tmp_path):
  (tmp_path / 'results.jsonl').write_text(json.dumps(_record('clean')) + '\n{oops\n')
  with pytest.raises(DuplicateRecordError, match=r'results\.jsonl:2 is not a JSON record'):
    ResultStore(str(tmp_path), {}, 'h')


def test_a_cell_from_other_inputs_is_refused(tmp_path):
  store = ResultStore(str(tmp_path), {}, 'h')
  inputs = {'model_sha256': 'a' * 64, 'test_set_sha256': 'b' * 64}
  store.add(_record('fgsm', inputs=inputs))
  key = cell_key(_record('fgsm'))
  store.check_inputs(key, inputs)  # Same inputs: fine.
  with pytest.raises(StaleInputError, match='computed from another model'):
    store.check_inputs(key, dict(inputs, model_sha256='c' * 64))
  with pytest.raises(StaleInputError, match='another test_set'):
    store.check_inputs(key, dict(inputs, test_set_sha256='c' * 64))
  old = ResultStore(str(tmp_path / 'old'), {}, 'h')
  old.add(_record('fgsm'))  # A record of a version that did not bind inputs.
  with pytest.raises(StaleInputError):
    old.check_inputs(key, inputs)


def _sweep_plan(workdir, **overrides):
  config = default.get_config()
  config.update({'model_pool': '.', 'workdir': str(workdir), 'num_tasks': 3, 'merge': True})
  config.update(overrides)
  return resolve_plan(config)


def _sweep(tmp_path, tasks):
  """A sweep workdir (its name has glob brackets) with task files for `tasks` of 3."""
  workdir = tmp_path / 'sweep[1]'
  plan = _sweep_plan(workdir)
  digest = provenance.config_hash(plan.result_config())
  workdir.mkdir()
  for task in tasks:
    record = dict(_record('clean', method=f'M{task}'), config_hash=digest)
    _write_lines(workdir / f'results.task-{task}-of-3.jsonl', [record])
  return workdir, plan, digest


def test_a_merge_with_a_task_missing_is_refused_unless_partial(tmp_path):
  workdir, plan, digest = _sweep(tmp_path, [0, 2])
  store = ResultStore(str(workdir), plan.config.to_dict(), digest)
  with pytest.raises(IncompleteSweepError, match=r'no records of task\(s\) \[1\] of 3'):
    merge_task_results(plan, store)
  partial = _sweep_plan(workdir, merge_partial=True)
  merge_task_results(partial, store)
  assert sorted(r['method'] for r in store.records) == ['M0', 'M2']


def test_a_merge_with_no_task_files_is_refused_even_partial(tmp_path):
  plan = _sweep_plan(tmp_path, merge_partial=True)
  store = ResultStore(str(tmp_path), plan.config.to_dict(), 'h')
  with pytest.raises(IncompleteSweepError, match='there are none'):
    merge_task_results(plan, store)


@pytest.mark.parametrize('umask', [0o022, 0o002])
def test_written_files_honour_the_umask(tmp_path, umask):
  previous = os.umask(umask)
  try:
    atomic_write_text(tmp_path / 'report.md', 'x')
    ResultStore(str(tmp_path / 'w'), {}, 'h').add(_record('clean'))
  finally:
    os.umask(previous)
  expected = 0o666 & ~umask
  for path in (tmp_path / 'report.md', tmp_path / 'w' / 'config.json'):
    assert os.stat(path).st_mode & 0o777 == expected, path


def test_reopening_a_finished_workdir_does_not_open_its_records_for_writing(tmp_path, monkeypatch):
  ResultStore(str(tmp_path), {}, 'h').add(_record('clean'))
  modes = []
  real_open = builtins.open

  def spying_open(file, mode='r', *args, **kwargs):
    if str(file).endswith('results.jsonl'):
      modes.append(mode)
    return real_open(file, mode, *args, **kwargs)

  monkeypatch.setattr(builtins, 'open', spying_open)
  assert len(ResultStore(str(tmp_path), {}, 'h').records) == 1
  assert modes and all(set(m) <= set('rbt') for m in modes), modes


def test_progress_counts_images_not_padded_batch_slots(caplog):
  progress = CellProgress('cell', batch_size=256, num_examples=48)
  with caplog.at_level('INFO'):
    progress(0, 1, 0.8)
  assert '48/48 images, 60.0 img/s' in caplog.text


def test_run_eta_uses_each_attacks_own_time():
  entry = ModelEntry('DC', 'cifar10', 10, 0, 'standard', 'path', 'checkpoint')
  cells = [Cell(entry, attack, False) for attack in ('clean', 'cw', 'clean', 'cw')]
  run = types.SimpleNamespace(clean_accuracy=50.0, robust_accuracy=10.0)
  progress = RunProgress(total=5, already_done=1)
  progress.plan(cells)
  assert progress.eta_seconds() is None
  assert progress.start(cells[0]).startswith('cell 2/5 DC ipc10 seed0 clean untargeted')
  progress.finish(cells[0], 1.0, run)
  assert progress.eta_seconds() == pytest.approx(3.0)  # No cw has run: the overall mean.
  progress.finish(cells[1], 100.0, run)
  assert progress.eta_seconds() == pytest.approx(101.0)  # One clean, one cw left.

"""Times our attacks against torchattacks 3.5.1 on the same CPU, weights and images.

Both sides run the `beard` protocol (PROTOCOL.md §5): the attacks see mean/std-
normalised tensors, clamp them to [0, 1] and use BEARD's hyperparameters; the
reference gets the bare PyTorch net. Runs alternate (ours, theirs, theirs, ours,
...) `--repeats` times; the table gives medians. Our compile time is separate.

  BEARD_DATA_DIR=../shared/data .venv/bin/python bench/bench_attacks.py \
    --attacks=fgsm,pgd --num_images=250 --batch_size=250 --repeats=3
"""

from __future__ import annotations

import sys

import common  # bench-local: puts the repo root on sys.path
import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from attacks import get_attack, get_spec
from beard_jax.protocols import BEARD

ATTACK_NAMES = ('fgsm', 'pgd', 'pgd_l2', 'cw', 'deepfool', 'apgd_ce', 'square', 'autoattack')
# APGD-CE is not in BEARD's suite; torchattacks' APGD defaults (10 steps, 1 restart) on both sides.
APGD_CE = dict(eps=8 / 255, steps=10, n_restarts=1, clip_min=0.0, clip_max=1.0)

FLAGS = flags.FLAGS
flags.DEFINE_list('attacks', list(ATTACK_NAMES), f'attacks to time, from {ATTACK_NAMES}')
flags.DEFINE_integer('num_images', 250, 'CIFAR-10 test images our side attacks')
flags.DEFINE_integer('batch_size', 250, 'batch size of both sides')
flags.DEFINE_integer('repeats', 3, 'alternating rounds per attack (medians reported)')
flags.DEFINE_integer(
  'reference_images', 0, 'images the reference attacks (0: --num_images); for slow references'
)
flags.DEFINE_list(
  'schedule_rows',
  [],
  "extra rows, our attack alone with one scheduling knob set: 'attack:knob=value', e.g. "
  "deepfool:slots=16 or autoattack:chunk=8 (the reference's rate is the attack's own row's)",
)
flags.DEFINE_list(
  'reference_subset_attacks',
  ['deepfool', 'autoattack'],
  'attacks whose reference runs on --reference_images (others use --num_images)',
)


def our_hparams(name: str) -> dict:
  """Our attack's hyperparameters under the `beard` protocol."""
  if name == 'apgd_ce':
    return dict(APGD_CE)
  return dict(BEARD.attack_hparams[name])


def torch_attack(name: str, model):
  """The torchattacks object with the same hyperparameters as `our_hparams(name)`."""
  import torchattacks

  h = our_hparams(name)
  if name == 'fgsm':
    return torchattacks.FGSM(model, eps=h['eps'])
  if name == 'pgd':
    return torchattacks.PGD(
      model, eps=h['eps'], alpha=h['step_size'], steps=h['steps'], random_start=False
    )
  if name == 'pgd_l2':
    return torchattacks.PGDL2(
      model, eps=h['eps'], alpha=h['step_size'], steps=h['steps'], random_start=False
    )
  if name == 'cw':
    return torchattacks.CW(model, c=h['c'], kappa=h['kappa'], steps=h['steps'], lr=h['lr'])
  if name == 'deepfool':
    return torchattacks.DeepFool(model, steps=h['steps'], overshoot=h['overshoot'])
  if name == 'apgd_ce':
    return torchattacks.APGD(
      model, norm='Linf', eps=h['eps'], steps=h['steps'], n_restarts=h['n_restarts'], loss='ce'
    )
  if name == 'square':
    return torchattacks.Square(
      model, norm='Linf', eps=h['eps'], n_queries=h['n_queries'], p_init=h['p_init']
    )
  if name == 'autoattack':
    return torchattacks.AutoAttack(
      model, norm='Linf', eps=h['eps'], version='standard', n_classes=10
    )
  raise ValueError(f'unknown attack {name!r}; choose from {ATTACK_NAMES}')


def make_ours(
  name: str, models: common.Models, images: common.Images, batch_size: int, **overrides
):
  """(run, compile_seconds, accuracy_fn): `run()` attacks all images batch by batch.

  `overrides` replace hyperparameters of `our_hparams(name)` (a scheduling knob's value).
  """
  attack = get_attack(name, **{**our_hparams(name), **overrides})
  apply_fn = models.apply_fn

  def program(params, x, y, key):
    return attack(apply_fn, params, x, y, key)

  predict = jax.jit(lambda params, x: jnp.argmax(apply_fn(params, x), -1))
  slices = common.batches(len(images.labels), batch_size)
  xs = [jnp.asarray(images.nhwc[s]) for s in slices]
  ys = [jnp.asarray(images.labels[s]) for s in slices]
  key = jax.random.key(0)
  compiled, compile_seconds = {}, 0.0
  for x, y in zip(xs, ys, strict=True):
    if x.shape not in compiled:
      compiled[x.shape], seconds = common.compile_jit(program, models.params, x, y, key)
      compile_seconds += seconds
  outputs = []

  def run():
    outputs.clear()
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
      outputs.append(
        common.block(compiled[x.shape](models.params, x, y, jax.random.fold_in(key, i)))
      )

  def accuracy() -> float:
    preds = [np.asarray(predict(models.params, x)) for x in outputs]
    return 100.0 * float(np.mean(np.concatenate(preds) == images.labels))

  return run, compile_seconds, accuracy


def make_theirs(name: str, models: common.Models, images: common.Images, batch_size: int):
  """(run, warmup, accuracy_fn) of the torchattacks reference on `images`."""
  torch = common.import_torch()
  atk = torch_attack(name, models.torch_model)
  slices = common.batches(len(images.labels), batch_size)
  xs = [common.to_torch(images.nchw[s]) for s in slices]
  ys = [common.to_torch(images.labels[s].astype(np.int64)) for s in slices]
  outputs = []

  def run():
    outputs.clear()
    for x, y in zip(xs, ys, strict=True):
      outputs.append(atk(x, y))
    common.torch_sync()

  def warmup():
    atk(xs[0][:1], ys[0][:1])  # one image: torch's one-off costs, cheap even for DeepFool
    common.torch_sync()

  def accuracy() -> float:
    with torch.no_grad():
      preds = [models.torch_model(x).argmax(1).cpu().numpy() for x in outputs]
    return 100.0 * float(np.mean(np.concatenate(preds) == images.labels))

  return run, warmup, accuracy


def bench_one(name: str, models, images, reference_images) -> list:
  """One table row for attack `name`."""
  run_ours, compile_seconds, acc_ours = make_ours(name, models, images, FLAGS.batch_size)
  run_theirs, warm_theirs, acc_theirs = make_theirs(
    name, models, reference_images, FLAGS.batch_size
  )
  run_ours()
  warm_theirs()
  times = common.time_alternating({'ours': run_ours, 'theirs': run_theirs}, FLAGS.repeats)
  n_ours, n_theirs = len(images.labels), len(reference_images.labels)
  ours_rate = n_ours / common.median(times['ours'])
  theirs_rate = n_theirs / common.median(times['theirs'])
  row = [
    name,
    n_ours,
    n_theirs,
    ours_rate,
    theirs_rate,
    ours_rate / theirs_rate,
    compile_seconds,
    acc_ours(),
    acc_theirs(),
  ]
  print(f'{name}: ours {times["ours"]} s, theirs {times["theirs"]} s', file=sys.stderr, flush=True)
  return row


def parse_schedule_row(entry: str) -> tuple[str, str, int]:
  """'attack:knob=value' → (attack, knob, value); a one-line error names what was expected."""
  name, _, setting = entry.partition(':')
  knob, _, value = setting.partition('=')
  if name not in ATTACK_NAMES or not value.isdigit():
    raise ValueError(f"--schedule_rows entry {entry!r}: expected 'attack:knob=integer', attack "
                     f'from {ATTACK_NAMES}')  # fmt: skip
  knobs = sorted(get_spec(name).schedule)
  if knob not in knobs:
    raise ValueError(f'--schedule_rows entry {entry!r}: {name} has the scheduling knobs {knobs}')
  return name, knob, int(value)


def schedule_rows(models, images, rows) -> list:
  """One row per `--schedule_rows` entry: our attack alone, ratio against the attack's row."""
  by_name = {row[0]: row for row in rows}
  nan = float('nan')
  extra = []
  for name, knob, value in map(parse_schedule_row, FLAGS.schedule_rows):
    base = by_name.get(name)
    run, compile_seconds, accuracy = make_ours(
      name, models, images, FLAGS.batch_size, **{knob: value}
    )
    run()
    times = common.time_alternating({'ours': run}, FLAGS.repeats)['ours']
    rate = len(images.labels) / common.median(times)
    theirs_rate = base[4] if base else nan
    print(f'{name} {knob}={value}: ours {times} s', file=sys.stderr, flush=True)
    extra.append(
      [f'{name} {knob}={value}', len(images.labels), base[2] if base else 0, rate, theirs_rate,
       rate / theirs_rate, compile_seconds, accuracy(), base[8] if base else nan]
    )  # fmt: skip
  return extra


def main(argv):
  del argv
  unknown = sorted(set(FLAGS.attacks) - set(ATTACK_NAMES))
  if unknown:
    raise ValueError(f'unknown attacks {unknown}; choose from {ATTACK_NAMES}')
  for entry in FLAGS.schedule_rows:
    parse_schedule_row(entry)  # before any expensive work
  models = common.load_models()
  images = common.load_test_images(FLAGS.num_images)
  subset = common.load_test_images(FLAGS.reference_images or FLAGS.num_images)
  print(common.machine_line())
  print(
    f'beard protocol, batch {FLAGS.batch_size}, {FLAGS.repeats} alternating repeats, medians; '
    'img/s of each side over the images it attacked'
  )
  rows = []
  for name in FLAGS.attacks:
    reference = subset if name in FLAGS.reference_subset_attacks else images
    rows.append(bench_one(name, models, images, reference))
  rows += schedule_rows(models, images, rows)
  header = [
    'attack',
    'ours N',
    'theirs N',
    'ours img/s',
    'theirs img/s',
    'ratio ours/theirs',
    'our compile s',
    'ours rob. acc % (N)',
    'theirs rob. acc % (N)',
  ]
  print(common.format_table(header, rows))


if __name__ == '__main__':
  app.run(main)

"""Distilled-set quality: ConvNet test accuracy against distillation iterations.

For each method of `--methods`, builds the set for `--dataset` and `--ipc` from the
real training split (`build_distilled_set`, seed `--seed`) at every iteration count
of `--iterations` in turn, each run continuing from the previous one's checkpoint
(`keep_checkpoint`: the set at N iterations is the set one N-iteration run writes),
then trains BEARD's ConvNet on it with the published SGD recipe shortened to
`--epochs` (DSA, lr 0.01 decayed ×0.1 at the midpoint; `--seeds` seeds in one program)
and scores the seeds on the whole test split. Coresets have one point (0 iterations).

One JSON line per (method, iterations) in `<out>/quality.jsonl`: accuracies per seed,
distillation and training wall seconds, the real set's size and sha256. A rerun
skips the rows already there, so a killed run continues. Example (the README's table):

  BEARD_DATA_DIR=/data/full .venv/bin/python bench/distill_quality.py --dataset=cifar10 \\
    --ipc=1 --methods=random,herding,dm --iterations=0,100,400 --epochs=300 --seeds=2 \\
    --out=runs/quality_cifar10_ipc1
"""

from __future__ import annotations

import json
import pathlib
import time

import common  # bench-local: puts the repo root on sys.path
import numpy as np
from absl import app, flags

from beard_jax.data.dataset_pool import load_distilled_set
from beard_jax.data.real import load_real_dataset
from beard_jax.data.specs import get_dataset_spec
from beard_jax.distill import build_distilled_set, get_method, parse_overrides, typed_overrides
from beard_jax.distill.pool_files import pool_paths, read_sidecar
from beard_jax.models.convnet import ConvNet, make_apply_fn, normalize
from beard_jax.train.evaluation import evaluate_seeds
from beard_jax.train.loop import train_seeds
from beard_jax.train.recipes import SGD_RECIPE

FLAGS = flags.FLAGS
flags.DEFINE_string('dataset', 'cifar10', 'cifar10, cifar100 or tinyimagenet')
flags.DEFINE_integer('ipc', 1, 'images per class')
flags.DEFINE_list('methods', ['random', 'herding', 'dm'], 'distillation methods')
flags.DEFINE_list('iterations', ['0', '100'], 'iteration counts of the iterative methods')
flags.DEFINE_integer('batch_real', 0, 'real images per class and iteration (0: official)')
flags.DEFINE_string('hparams', '', 'name=value,... overrides of the methods that have the field '
                    '(e.g. num_experts=4,expert_train_epochs=3 for MTT)')  # fmt: skip
flags.DEFINE_integer('epochs', 300, 'training epochs of the evaluation recipe (BEARD: 1000)')
flags.DEFINE_integer('seeds', 2, 'models trained per set')
flags.DEFINE_integer('seed', 0, 'distillation seed')
flags.DEFINE_string('out', 'runs/quality', 'output folder: the pool and quality.jsonl')


def _done_rows(path: pathlib.Path) -> set[tuple[str, int]]:
  if not path.exists():
    return set()
  rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
  return {(row['method'], row['iterations']) for row in rows}


def _score(set_path: str, spec, recipe, test) -> tuple[list[float], float]:
  """Test accuracies (%) of `--seeds` ConvNets trained on the set, and the training seconds."""
  distilled = load_distilled_set(set_path, spec.name)
  model = ConvNet(spec.num_classes)
  start = time.perf_counter()
  stacked = train_seeds(
    list(range(FLAGS.seeds)), distilled.images, distilled.labels, recipe, model, spec
  )
  seconds = time.perf_counter() - start
  pixels = test.images.astype(np.float32) / 255.0
  correct = evaluate_seeds(
    make_apply_fn(model, spec, 'normalized'),
    stacked,
    np.asarray(normalize(spec, pixels)),
    test.labels,
  )
  return [round(100.0 * float(c) / len(test.labels), 2) for c in correct], seconds


def main(argv):
  del argv
  spec = get_dataset_spec(FLAGS.dataset)
  out = pathlib.Path(FLAGS.out)
  out.mkdir(parents=True, exist_ok=True)
  rows_path = out / 'quality.jsonl'
  done = _done_rows(rows_path)
  real = load_real_dataset(spec.name, 'train', common.data_dir())
  test = load_real_dataset(spec.name, 'test', common.data_dir())
  recipe = SGD_RECIPE._replace(epochs=FLAGS.epochs)
  for method in FLAGS.methods:
    iterative = get_method(method).default_iterations > 0
    for iterations in sorted(int(i) for i in FLAGS.iterations) if iterative else [0]:
      if (method, iterations) in done:
        continue
      overrides = parse_overrides(FLAGS.hparams)
      if FLAGS.batch_real:
        overrides['batch_real'] = str(FLAGS.batch_real)
      hparams = typed_overrides(method, spec, FLAGS.ipc, overrides)
      set_path = build_distilled_set(
        method,
        spec,
        real.images,
        real.labels,
        FLAGS.ipc,
        key=FLAGS.seed,
        out_dir=out / 'pool',
        iterations=iterations,
        hparams=hparams,
        keep_checkpoint=True,
      )
      paths = pool_paths(out / 'pool', get_method(method).pool_name, spec, FLAGS.ipc)
      sidecar = read_sidecar(paths.pt_sidecar) or {}
      accuracies, train_seconds = _score(set_path, spec, recipe, test)
      row = {
        'method': method,
        'dataset': spec.name,
        'ipc': FLAGS.ipc,
        'iterations': iterations,
        'accuracies': accuracies,
        'mean': round(float(np.mean(accuracies)), 2),
        'distill_seconds': sidecar.get('wall_seconds'),
        'train_seconds': round(train_seconds, 1),
        'epochs': FLAGS.epochs,
        'hyperparameters': sidecar.get('hyperparameters'),
        'real_data': sidecar.get('real_data'),
        'learned_lr': sidecar.get('learned_lr'),
        'experts_seconds': sidecar.get('experts_seconds'),
        'test_images': len(test.labels),
      }
      with rows_path.open('a', encoding='utf-8') as f:
        f.write(json.dumps(row) + '\n')
      print(
        f'{method} {spec.name} IPC {FLAGS.ipc} {iterations} it: {accuracies} % '
        f'(distill {row["distill_seconds"]} s, train {train_seconds:.0f} s)',
        flush=True,
      )


if __name__ == '__main__':
  app.run(main)

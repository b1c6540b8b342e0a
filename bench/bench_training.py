"""Times N seeds of our trainer against N sequential PyTorch runs of the same recipe.

The recipe is the published SGD one (lr 0.01, momentum 0.9, weight decay 5e-4,
batch 256, lr ×0.1 with a fresh optimizer at epochs // 2) shortened to
`--epochs`, WITHOUT DSA on both sides (the torch side has no DSA, so ours runs
`augmentation=None` too and the work is equal). Modes:

* `map`: our N seeds in one program, `seed_axis='map'` (`lax.map`, the CPU default);
* `vmap`: our N seeds in one program, `seed_axis='vmap'`;
* `loop`: a Python loop of N single-seed runs of our compiled program;
* `chunked`: `train_seeds` as the benchmark runs it: the same epochs as `map` (on a
  CPU; `vmap` elsewhere) as a host loop over chunks of ~5 s, the losses read and
  checked and a progress line logged between chunks; its overhead is its time
  over the single program's (`map`, or `vmap` off CPU);
* `torch`: N sequential PyTorch runs (`torch.set_num_threads(2)`; `--torch_device=cuda`
  on a GPU).

Sets: the real DC CIFAR-10 sets at IPC 1 and 10; IPC 50 is a synthetic 500-image
set of the same shape (no IPC-50 file exists). Our compile time is reported apart.

  BEARD_DATA_DIR=../shared/data .venv/bin/python bench/bench_training.py \
    --ipcs=1,10 --epochs=20 --seeds=3 --repeats=1
  # the chunked loop's overhead over the single program
  BEARD_DATA_DIR=../shared/data .venv/bin/python bench/bench_training.py \
    --ipcs=10 --epochs=100 --seeds=2 --repeats=3 --modes=map,chunked
"""

from __future__ import annotations

import sys
import time

import common  # bench-local: puts the repo root on sys.path
import jax
import numpy as np
from absl import app, flags

from beard_jax.benchmark.progress import TrainingProgress
from beard_jax.data.dataset_pool import load_distilled_set
from beard_jax.data.specs import get_dataset_spec
from beard_jax.models.convnet import ConvNet
from beard_jax.train.loop import train_seeds
from beard_jax.train.recipes import SGD_RECIPE
from beard_jax.train.trainer import (
  default_seed_axis,
  make_chunk_fn,
  make_init_fn,
  make_train_fn,
  prepare_inputs,
  seed_keys,
)

MODES = ('map', 'vmap', 'loop', 'chunked', 'torch')
DC_FILE = 'dataset_pool/DC/res_DC_CIFAR10_ConvNet_{ipc}ipc_3000.pt'

FLAGS = flags.FLAGS
flags.DEFINE_list('ipcs', ['1', '10', '50'], 'images per class (50 is synthetic)')
flags.DEFINE_integer('epochs', 20, 'epochs per run (both sides)')
flags.DEFINE_integer('seeds', 3, 'N: runs per mode')
flags.DEFINE_list('modes', list(MODES), f'modes to time, from {MODES}')
flags.DEFINE_bool('warmup', True, 'one untimed run of the first mode before timing')
flags.DEFINE_integer('repeats', 1, 'alternating rounds per IPC (medians reported)')


def load_set(ipc: int) -> tuple[np.ndarray, np.ndarray, str]:
  """(pixel-scale images [N, 32, 32, 3], int32 labels [N], source) for `ipc`."""
  path = common.data_dir() / DC_FILE.format(ipc=ipc)
  if path.exists():
    distilled = load_distilled_set(path, 'cifar10')
    return distilled.images, np.asarray(distilled.labels, np.int32), 'DC (real)'
  rng = np.random.default_rng(ipc)
  images = rng.uniform(0.0, 1.0, size=(10 * ipc, 32, 32, 3)).astype(np.float32)
  labels = np.repeat(np.arange(10, dtype=np.int32), ipc)
  return images, labels, 'synthetic'


def our_runs(recipe, images, labels, seeds: int, modes) -> tuple[dict, dict]:
  """name → run() and name → compile seconds for our modes in `modes`."""
  spec = get_dataset_spec('cifar10')
  model = ConvNet(spec.num_classes)
  x, y = jax.numpy.asarray(images), jax.numpy.asarray(labels)
  keys = seed_keys(range(seeds))
  runs, compile_seconds = {}, {}
  for mode in ('map', 'vmap', 'loop'):
    if mode not in modes:
      continue
    axis = 'vmap' if mode == 'vmap' else 'map'
    train = make_train_fn(recipe, model, spec, seed_axis=axis)
    mode_keys = keys[:1] if mode == 'loop' else keys
    compiled, compile_seconds[mode] = common.compile_jit(train, mode_keys, x, y)
    if mode == 'loop':

      def run(compiled=compiled):
        for i in range(seeds):
          common.block(compiled(keys[i : i + 1], x, y))

    else:

      def run(compiled=compiled):
        common.block(compiled(keys, x, y))

    runs[mode] = run
  if 'chunked' in modes:
    runs['chunked'], compile_seconds['chunked'] = chunked_run(recipe, images, labels, seeds)
  return runs, compile_seconds


def chunked_run(recipe, images, labels, seeds: int):
  """(run(): `train_seeds` of `seeds` seeds with progress, its programs' compile seconds)."""
  spec = get_dataset_spec('cifar10')
  model = ConvNet(spec.num_classes)
  keys = seed_keys(range(seeds))
  axis = default_seed_axis()
  start = time.perf_counter()
  # Compiles the two programs train_seeds runs into their jit caches (a 0-epoch chunk).
  state = make_init_fn(recipe, model, spec, axis)(keys)
  chunk_fn = make_chunk_fn(recipe, model, spec, None, 'normalized', axis)
  common.block(chunk_fn(state, keys, *prepare_inputs(images, labels, model, spec), 0, 0))
  compile_seconds = time.perf_counter() - start

  def run():
    progress = TrainingProgress(f'chunked {seeds} seeds')
    common.block(train_seeds(range(seeds), images, labels, recipe, model, spec, progress=progress))

  return run, compile_seconds


def torch_run(recipe, images, labels, seeds: int):
  """run(): `seeds` sequential PyTorch trainings of `recipe` (no augmentation)."""
  torch = common.import_torch()
  torch_convnet = common.torch_convnet_module()
  spec = get_dataset_spec('cifar10')
  normalized = (images - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
  x = common.to_torch(np.ascontiguousarray(normalized.transpose(0, 3, 1, 2)))
  y = common.to_torch(labels.astype(np.int64))
  device = common.torch_device()
  num = x.shape[0]
  decay_at = recipe.epochs // 2

  def optimizer_for(net, lr):
    return torch.optim.SGD(
      net.parameters(), lr=lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
    )

  def warmup():
    net = torch_convnet.TorchConvNet(10).to(device).train()
    torch.nn.functional.cross_entropy(net(x[:2]), y[:2]).backward()
    common.torch_sync()

  def run():
    for seed in range(seeds):
      torch.manual_seed(seed)
      net = torch_convnet.TorchConvNet(10).to(device).train()
      opt = optimizer_for(net, recipe.learning_rate)
      for epoch in range(recipe.epochs):
        if recipe.lr_decay and epoch == decay_at:
          opt = optimizer_for(net, recipe.learning_rate * recipe.lr_decay_factor)
        order = torch.randperm(num, device=device)
        for start in range(0, num, recipe.batch_size):
          idx = order[start : start + recipe.batch_size]
          loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
          opt.zero_grad()
          loss.backward()
          opt.step()
    common.torch_sync()

  return run, warmup


def main(argv):
  del argv
  unknown = sorted(set(FLAGS.modes) - set(MODES))
  if unknown:
    raise ValueError(f'unknown modes {unknown}; choose from {MODES}')
  recipe = SGD_RECIPE._replace(epochs=FLAGS.epochs, published_loop=False, augmentation=None)
  print(common.machine_line())
  print(
    f'{FLAGS.seeds} seeds per mode, {FLAGS.epochs} epochs, SGD recipe without DSA, '
    f'batch {recipe.batch_size}, {FLAGS.repeats} alternating repeats, medians'
  )
  rows = []
  for ipc in (int(i) for i in FLAGS.ipcs):
    images, labels, source = load_set(ipc)
    runs, compile_seconds = our_runs(recipe, images, labels, FLAGS.seeds, FLAGS.modes)
    if 'torch' in FLAGS.modes:
      runs['torch'], torch_warmup = torch_run(recipe, images, labels, FLAGS.seeds)
      torch_warmup()
    for mode in FLAGS.modes[:1] if FLAGS.warmup else ():
      runs[mode]()  # the process's first XLA execution pays one-off costs
    times = common.time_alternating(runs, FLAGS.repeats)
    print(f'IPC {ipc}: {times}', file=sys.stderr, flush=True)
    medians = {mode: common.median(t) for mode, t in times.items()}
    torch_seconds = medians.get('torch', float('nan'))
    for mode in FLAGS.modes:
      seconds = medians[mode]
      rows.append(
        [
          ipc,
          source,
          mode,
          seconds,
          seconds / FLAGS.epochs,
          seconds / (FLAGS.epochs * FLAGS.seeds),
          torch_seconds / seconds,
          compile_seconds.get(mode, float('nan')),
        ]
      )
  header = [
    'IPC',
    'set',
    'mode',
    f'total s ({FLAGS.seeds} seeds)',
    's/epoch (all seeds)',
    's/epoch/seed',
    'speed-up vs torch',
    'compile s',
  ]
  print(common.format_table(header, rows))


if __name__ == '__main__':
  app.run(main)

"""Times our DM iterations against a plain-PyTorch DM loop written from the paper's algorithm.

Both sides run DM's official iteration on CIFAR-10 (real images: the 1,000 per
class of `cifar10/train_1k_per_class.npz`): a fresh randomly initialised
ConvNet (width 128, depth 3), for each class `--batch_real` random real images
and the class's `--ipc` synthetic ones augmented with one shared DSA draw
(`color_crop_cutout_flip_scale_rotate`), the squared distance of their mean
embeddings, and one SGD step (lr 1, momentum 0.5) on the synthetic images.

* `ours`: `dm.run_chunk` (all classes in one jitted step, `class_chunk` classes
  vmapped at a time; `--class_chunks` times several, 0 = auto).
* `torch`: a Python loop over classes, as the official code: `TorchConvNet`
  (tests/parity) re-created each iteration (PyTorch's default init), `torch.no_grad`
  real embeddings, a compact Siamese DSA written here (one op and one parameter
  draw per class, shared by the real and synthetic batch). What differs: its DSA
  draws come from `random`/`torch` generators, `scale`/`rotate` use
  `grid_sample(align_corners=False)` where ours resample with `align_corners=True`,
  and `crop` pads with `F.pad` instead of a gather; the work per op is the same order.

Reported: iterations/s of each side (median over `--repeats` alternating rounds
of `--iterations`), real images embedded per second (= it/s · K · batch_real),
ours/theirs, and our compile seconds (never counted). The roofline: the FLOPs of one
iteration (XLA's cost analysis of one `dm.step` with all classes vmapped, so no loop
hides a body), each side's achieved GFLOP/s, and the best this CPU does on a 2048²
float32 matmul in either framework: the ceiling any DM implementation could reach. torch runs with
`OMP_WAIT_POLICY=PASSIVE` unless set otherwise (see below).

  BEARD_DATA_DIR=../shared/data .venv/bin/python bench/bench_distill.py \\
    --ipc=10 --iterations=3 --repeats=2 --class_chunks=0,1
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import time

import common  # bench-local: puts the repo root on sys.path
import jax
import numpy as np
import torch_dsa
from absl import app, flags

from beard_jax.data.specs import get_dataset_spec
from beard_jax.distill import dm, real_data

FLAGS = flags.FLAGS
flags.DEFINE_integer('ipc', 10, 'synthetic images per class')
flags.DEFINE_integer('batch_real', 256, 'real images per class per iteration')
flags.DEFINE_integer('iterations', 3, 'DM iterations per timed round')
flags.DEFINE_integer('repeats', 2, 'alternating rounds (medians reported)')
flags.DEFINE_list('class_chunks', ['0', '1'], 'our class_chunk settings (0: auto = all of K here)')
flags.DEFINE_bool('torch', True, 'time the PyTorch loop too')

# On a shared, oversubscribed CPU, OpenMP's spinning barriers made torch's 2-thread ConvNet
# passes ~100x slower (measured: 0.23 s vs 2 ms per 1-image forward); sleep instead.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')


def load_real():
  """(uint8 images [N, 32, 32, 3], int labels [N]) of the shared CIFAR-10 training subset."""
  with np.load(common.data_dir() / 'cifar10/train_1k_per_class.npz') as archive:
    return archive['images'], archive['labels']


def make_ours(images, labels, class_chunk: int):
  """(run(iterations) -> seconds, compile seconds) for our DM at `class_chunk`."""
  spec = get_dataset_spec('cifar10')
  data = real_data.index_by_class(images, labels, spec.num_classes)
  config = dm.DMConfig(batch_real=FLAGS.batch_real, class_chunk=class_chunk)
  state = dm.init_state(jax.random.key(0), data, spec, FLAGS.ipc, config)
  return common.distill_runner(dm.run_chunk, state, data, spec, config)


def iteration_gflop(images, labels) -> float:
  """GFLOPs of one DM iteration (the same algorithm, hence the same work, on both sides)."""
  spec = get_dataset_spec('cifar10')
  data = real_data.index_by_class(images, labels, spec.num_classes)
  config = dm.DMConfig(batch_real=FLAGS.batch_real, class_chunk=spec.num_classes)
  state = dm.init_state(jax.random.key(0), data, spec, FLAGS.ipc, config)
  step = jax.jit(dm.step, static_argnames=('spec', 'config'))
  cost = step.lower(state, data, spec, config).compile().cost_analysis()
  return (cost[0] if isinstance(cost, list) else cost)['flops'] / 1e9


def matmul_peak_gflops(side: str, n: int = 2048, repeats: int = 5) -> float:
  """GFLOP/s of a float32 [n, n] @ [n, n] matmul on `side` (`jax` or `torch`), median."""
  if side == 'jax':
    a = jax.numpy.ones((n, n), jax.numpy.float32)
    matmul = jax.jit(lambda a: a @ a)
    run = lambda: matmul(a).block_until_ready()  # noqa: E731
  else:
    torch = common.import_torch()
    a = torch.ones(n, n)
    run = lambda: a @ a  # noqa: E731
  run()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
  return 2 * n**3 / statistics.median(times) / 1e9


def make_torch(images, labels):
  """run(iterations) -> seconds for the plain PyTorch DM loop."""
  torch = common.import_torch()
  convnet = common.torch_convnet_module().TorchConvNet
  spec = get_dataset_spec('cifar10')
  mean, std = np.asarray(spec.mean, np.float32), np.asarray(spec.std, np.float32)
  normalized = ((images.astype(np.float32) / 255.0 - mean) / std).transpose(0, 3, 1, 2)
  real = common.to_torch(np.ascontiguousarray(normalized))
  by_class = [np.flatnonzero(labels == c) for c in range(spec.num_classes)]
  init = np.concatenate([index[: FLAGS.ipc] for index in by_class])
  syn = real[init].clone().requires_grad_(True)
  optimizer = torch.optim.SGD([syn], lr=1.0, momentum=0.5)
  rng, generator = random.Random(0), np.random.default_rng(0)

  def iteration():
    net = convnet(num_classes=spec.num_classes).to(common.torch_device())
    for p in net.parameters():
      p.requires_grad_(False)
    loss = 0.0
    for c, index in enumerate(by_class):
      batch = real[generator.permutation(index)[: FLAGS.batch_real]]
      own = syn[c * FLAGS.ipc : (c + 1) * FLAGS.ipc]
      op, draw = torch_dsa.draw_op(rng)
      with torch.no_grad():
        real_mean = net.features(torch_dsa.siamese(torch, batch, op, draw)).flatten(1).mean(0)
      syn_mean = net.features(torch_dsa.siamese(torch, own, op, draw)).flatten(1).mean(0)
      loss = loss + torch.sum((real_mean - syn_mean) ** 2)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

  def run(iterations: int) -> float:
    start = time.perf_counter()
    for _ in range(iterations):
      iteration()
    common.torch_sync()
    return time.perf_counter() - start

  return run


def main(argv):
  del argv
  images, labels = load_real()
  sides, compile_seconds = {}, {}
  for chunk in map(int, FLAGS.class_chunks):
    name = f'ours (class_chunk={chunk or "auto"})'
    sides[name], compile_seconds[name] = make_ours(images, labels, chunk)
  if FLAGS.torch:
    sides['torch'] = make_torch(images, labels)
  for run in sides.values():
    run(1)  # Warm-up: first-call costs (and torch's allocator) out of the timings.
  seconds = {name: [] for name in sides}
  for _ in range(FLAGS.repeats):
    for name, run in sides.items():
      seconds[name].append(run(FLAGS.iterations))
      print(f'{name}: {seconds[name][-1]:.2f} s / {FLAGS.iterations} it', file=sys.stderr)
  real_per_iteration = 10 * FLAGS.batch_real
  print(
    f'DM CIFAR-10, IPC {FLAGS.ipc}, batch_real {FLAGS.batch_real}, {FLAGS.iterations} iterations '
    f'x {FLAGS.repeats} rounds, backend {jax.default_backend()}'
  )
  gflop = iteration_gflop(images, labels)
  peaks = {
    side: matmul_peak_gflops(side) for side in ('jax', 'torch') if side != 'torch' or FLAGS.torch
  }
  peak = max(peaks.values())
  print(
    f'{"side":28s} {"it/s":>8s} {"real img/s":>11s} {"vs torch":>9s} {"compile s":>10s} '
    f'{"GFLOP/s":>8s} {"% peak":>7s}'
  )
  rates = {name: FLAGS.iterations / statistics.median(times) for name, times in seconds.items()}
  for name, rate in rates.items():
    ratio = f'{rate / rates["torch"]:.2f}x' if 'torch' in rates else '-'
    compile_text = f'{compile_seconds[name]:.1f}' if name in compile_seconds else '-'
    print(
      f'{name:28s} {rate:8.3f} {rate * real_per_iteration:11.0f} {ratio:>9s} {compile_text:>10s} '
      f'{rate * gflop:8.1f} {100 * rate * gflop / peak:7.0f}'
    )
  print(
    f'one iteration: {gflop:.1f} GFLOP; float32 matmul peak: '
    + ', '.join(f'{side} {value:.0f} GFLOP/s' for side, value in peaks.items())
  )
  if 'torch' in rates:
    print(f'ceiling at the peak: {peak / (rates["torch"] * gflop):.2f}x torch')


if __name__ == '__main__':
  app.run(main)

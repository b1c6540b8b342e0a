"""Times our DC/DSA iterations against a plain-PyTorch loop of the same algorithm.

Both sides run the official iteration (VICO-UoE/DatasetCondensation `main.py`) on
CIFAR-10 (real images: the 1,000 per class of `cifar10/train_1k_per_class.npz`): a fresh
ConvNet-128-3; `--outer_loop` times: for each class `--batch_real` random real images and
the class's `--ipc` synthetic ones (`--dsa`: one shared DSA draw), the gradients of the
cross-entropy on each w.r.t. the network, their per-output-unit cosine distance (1-D
parameters ignored), one SGD step (lr 0.1, momentum 0.5) on the images through the
second-order gradient; between outer steps `--inner_loop` epochs of plain SGD (lr 0.01)
of the network on the synthetic set.

* `ours`: `dc.run_chunk` (all classes in one jitted step).
* `torch`: a Python loop over classes, as the official code (`TorchConvNet` of
  tests/parity, `torch.autograd.grad(..., create_graph=True)`, the compact DSA of
  `torch_dsa`; the inner loop without augmentation for DC, with one draw per batch for DSA).

Reported: iterations/s of each side (median of `--repeats` alternating rounds of
`--iterations`), ours/theirs, our compile seconds (never counted). Run it quiet:

  BEARD_DATA_DIR=../shared/data .venv/bin/python bench/bench_dc.py --ipc=1 --iterations=2
"""

from __future__ import annotations

import os
import random
import statistics
import time

import common  # bench-local: puts the repo root on sys.path
import jax
import numpy as np
import torch_dsa
from absl import app, flags

from beard_jax.data.specs import get_dataset_spec
from beard_jax.distill import dc, real_data

FLAGS = flags.FLAGS
flags.DEFINE_integer('ipc', 1, 'synthetic images per class')
flags.DEFINE_integer('batch_real', 256, 'real images per class per matching step')
flags.DEFINE_integer('outer_loop', 1, 'matching steps per iteration (official: 1 at IPC 1)')
flags.DEFINE_integer('inner_loop', 1, 'network epochs between them (official: 1 at IPC 1)')
flags.DEFINE_bool('dsa', False, 'DSA (Siamese augmentation) instead of DC')
flags.DEFINE_integer('iterations', 2, 'iterations per timed round')
flags.DEFINE_integer('repeats', 2, 'alternating rounds (medians reported)')

os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')  # See bench_distill.py.


def _config() -> dc.DCConfig:
  strategy = torch_dsa.STRATEGY if FLAGS.dsa else 'none'
  return dc.DCConfig(batch_real=FLAGS.batch_real, outer_loop=FLAGS.outer_loop,
                     inner_loop=FLAGS.inner_loop, dsa_strategy=strategy, init='real')  # fmt: skip


def make_ours(images, labels):
  """(run(iterations) -> seconds, compile seconds) of our DC/DSA."""
  spec = get_dataset_spec('cifar10')
  data = real_data.index_by_class(images, labels, spec.num_classes)
  config = _config()
  state = dc.init_state(jax.random.key(0), data, spec, FLAGS.ipc, config)
  return common.distill_runner(dc.run_chunk, state, data, spec, config)


def make_torch(images, labels):
  """run(iterations) -> seconds of the plain PyTorch DC/DSA loop."""
  torch = common.import_torch()
  functional = torch.nn.functional
  convnet = common.torch_convnet_module().TorchConvNet
  spec = get_dataset_spec('cifar10')
  mean, std = np.asarray(spec.mean, np.float32), np.asarray(spec.std, np.float32)
  normalized = ((images.astype(np.float32) / 255.0 - mean) / std).transpose(0, 3, 1, 2)
  real = common.to_torch(np.ascontiguousarray(normalized))
  by_class = [np.flatnonzero(labels == c) for c in range(spec.num_classes)]
  init = np.concatenate([index[: FLAGS.ipc] for index in by_class])
  syn = real[init].clone().requires_grad_(True)
  syn_labels = torch.arange(spec.num_classes).repeat_interleave(FLAGS.ipc)
  optimizer_img = torch.optim.SGD([syn], lr=0.1, momentum=0.5)
  rng, generator = random.Random(0), np.random.default_rng(0)

  def distance(real_grads, syn_grads):
    total = 0.0
    for gr, gs in zip(real_grads, syn_grads, strict=True):
      if gr.dim() == 1:
        continue
      gr, gs = gr.reshape(gr.shape[0], -1), gs.reshape(gs.shape[0], -1)
      cosine = (gr * gs).sum(-1) / (gr.norm(dim=-1) * gs.norm(dim=-1) + 1e-6)
      total = total + (1 - cosine).sum()
    return total

  def augment(x, op_draw):
    return torch_dsa.siamese(torch, x, *op_draw) if FLAGS.dsa else x

  def iteration():
    net = convnet(num_classes=spec.num_classes)
    params = list(net.parameters())
    optimizer_net = torch.optim.SGD(params, lr=0.01)
    for ol in range(FLAGS.outer_loop):
      loss = 0.0
      for c, index in enumerate(by_class):
        batch = real[generator.permutation(index)[: FLAGS.batch_real]]
        op_draw = torch_dsa.draw_op(rng)
        target = torch.full((batch.shape[0],), c)
        real_loss = functional.cross_entropy(net(augment(batch, op_draw)), target)
        real_grads = [g.detach() for g in torch.autograd.grad(real_loss, params)]
        own = syn[c * FLAGS.ipc : (c + 1) * FLAGS.ipc]
        syn_loss = functional.cross_entropy(net(augment(own, op_draw)), target[: FLAGS.ipc])
        syn_grads = torch.autograd.grad(syn_loss, params, create_graph=True)
        loss = loss + distance(real_grads, syn_grads)
      optimizer_img.zero_grad()
      loss.backward()
      optimizer_img.step()
      if ol == FLAGS.outer_loop - 1:
        break
      train = syn.detach()
      for _ in range(FLAGS.inner_loop):
        order = torch.randperm(train.shape[0])
        for lo in range(0, train.shape[0], 256):
          rows = order[lo : lo + 256]
          x = augment(train[rows], torch_dsa.draw_op(rng))
          optimizer_net.zero_grad()
          functional.cross_entropy(net(x), syn_labels[rows]).backward()
          optimizer_net.step()

  def run(iterations: int) -> float:
    start = time.perf_counter()
    for _ in range(iterations):
      iteration()
    return time.perf_counter() - start

  return run


def main(argv):
  del argv
  with np.load(common.data_dir() / 'cifar10/train_1k_per_class.npz') as archive:
    images, labels = archive['images'], archive['labels']
  ours, compile_seconds = make_ours(images, labels)
  sides = {'ours': ours, 'torch': make_torch(images, labels)}
  for run in sides.values():
    run(1)  # Warm-up.
  seconds = {name: [] for name in sides}
  for _ in range(FLAGS.repeats):
    for name, run in sides.items():
      seconds[name].append(run(FLAGS.iterations))
  method = 'DSA' if FLAGS.dsa else 'DC'
  print(common.machine_line())
  print(f'{method} CIFAR-10, IPC {FLAGS.ipc}, batch_real {FLAGS.batch_real}, outer_loop '
        f'{FLAGS.outer_loop}, inner_loop {FLAGS.inner_loop}; {FLAGS.iterations} it x '
        f'{FLAGS.repeats} rounds; compile (ours) {compile_seconds:.1f} s')  # fmt: skip
  rates = {name: FLAGS.iterations / statistics.median(times) for name, times in seconds.items()}
  for name, rate in rates.items():
    print(f'{name:6s} {rate:8.3f} it/s  {rate / rates["torch"]:.2f}x  rounds {seconds[name]}')


if __name__ == '__main__':
  app.run(main)

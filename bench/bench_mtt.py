"""Times our MTT iterations against a plain-PyTorch loop of the same algorithm, and what
rematerialising the unrolled student costs.

Both sides run the official iteration (GeorgeCazenavette/mtt-distillation `distill.py`)
on CIFAR-10 with the ConvNet-128-3: from an expert's start parameters, `syn_steps` student
steps on the synthetic set (all of it per step, DSA on each batch), the loss
‖θ_N − θ*‖² / ‖θ₀ − θ*‖², its gradient through all N steps w.r.t. the images and the
learnable step size, one SGD step (momentum 0.5) on each. The expert buffer is two
random trajectories of 4 epochs (the cost does not depend on the values); synthetic
images start as real ones (`cifar10/train_1k_per_class.npz`).

* `ours`: `mtt.run_chunk` (`remat=True`, the default: each student step recomputed in
  the backward pass), and `ours-noremat` (every step's activations kept).
* `torch`: the official unroll: a flat parameter vector viewed as the network's
  parameters (`torch.func.functional_call`, as its `ReparamModule`),
  `torch.autograd.grad(..., create_graph=True)` per step, the compact DSA of `torch_dsa`
  (one draw per batch; the official draws per image: the same work).

Reported: iterations/s of each side (median of `--repeats` alternating rounds of
`--iterations`), ours/theirs, our compile seconds (never counted), and XLA's temporary
buffer bytes of one iteration with and without remat (`memory_analysis`). Run it quiet:

  BEARD_DATA_DIR=../shared/data .venv/bin/python bench/bench_mtt.py --ipc=1
"""

from __future__ import annotations

import os
import random
import statistics
import time

import common  # bench-local: puts the repo root on sys.path
import jax
import jax.numpy as jnp
import numpy as np
import torch_dsa
from absl import app, flags

from beard_jax.data.specs import get_dataset_spec
from beard_jax.distill import experts, mtt, real_data
from beard_jax.models.convnet import ConvNet, init_params

FLAGS = flags.FLAGS
flags.DEFINE_integer('ipc', 1, 'synthetic images per class')
flags.DEFINE_integer('syn_steps', 0, "student steps per iteration; 0 = the official (IPC 1: 50, "
                     'IPC 10: 30)')  # fmt: skip
flags.DEFINE_integer('iterations', 2, 'iterations per timed round')
flags.DEFINE_integer('repeats', 2, 'alternating rounds (medians reported)')
flags.DEFINE_bool('noremat', True, 'also time ours without rematerialisation')

os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')  # See bench_distill.py.
SPEC = get_dataset_spec('cifar10')


def _config(remat: bool) -> mtt.MTTConfig:
  official = mtt.official_config('cifar10', FLAGS.ipc)
  steps = FLAGS.syn_steps or official.syn_steps
  return official._replace(
    syn_steps=steps, expert_epochs=2, max_start_epoch=2, zca=False, remat=remat,
    dsa_strategy=torch_dsa.STRATEGY,
  )  # fmt: skip


def _trajectories() -> jax.Array:
  """float32 [2, 4, P]: two random 'experts' (start = init, later epochs perturbed)."""
  model = ConvNet(SPEC.num_classes)
  rows = []
  for expert in range(2):
    start = experts.flatten_params(init_params(model, SPEC, jax.random.key(expert)))
    noise = jax.random.normal(jax.random.key(100 + expert), (3, start.size)) * 1e-3
    rows.append(jnp.concatenate([start[None], start + jnp.cumsum(noise, 0)]))
  return jnp.stack(rows)


def make_ours(images, labels, remat: bool):
  """(run(iterations) -> seconds, compile seconds, temp bytes) of our MTT."""
  data = real_data.index_by_class(images, labels, SPEC.num_classes)
  config = _config(remat)
  state = mtt.init_state(jax.random.key(0), data, None, SPEC, FLAGS.ipc, config)
  trajectories = _trajectories()
  run, compile_seconds = common.distill_runner(mtt.run_chunk, state, trajectories, SPEC, config)
  lowered = mtt.run_chunk.lower(state, np.int32(1), trajectories, SPEC, config)
  temp_bytes = lowered.compile().memory_analysis().temp_size_in_bytes  # Cached: no recompile.
  return run, compile_seconds, temp_bytes


def make_torch(images, labels):
  """run(iterations) -> seconds of the official unroll in plain PyTorch."""
  torch = common.import_torch()
  functional = torch.nn.functional
  net = common.torch_convnet_module().TorchConvNet(num_classes=SPEC.num_classes)
  names = [name for name, _ in net.named_parameters()]
  shapes = [p.shape for _, p in net.named_parameters()]
  sizes = [p.numel() for _, p in net.named_parameters()]
  mean, std = np.asarray(SPEC.mean, np.float32), np.asarray(SPEC.std, np.float32)
  normalized = ((images.astype(np.float32) / 255.0 - mean) / std).transpose(0, 3, 1, 2)
  real = common.to_torch(np.ascontiguousarray(normalized))
  by_class = [np.flatnonzero(labels == c) for c in range(SPEC.num_classes)]
  init = np.concatenate([index[: FLAGS.ipc] for index in by_class])
  syn = real[init].clone().requires_grad_(True)
  syn_labels = torch.arange(SPEC.num_classes).repeat_interleave(FLAGS.ipc)
  config = _config(True)
  syn_lr = torch.tensor(config.initial_syn_lr, requires_grad=True)
  optimizer_img = torch.optim.SGD([syn], lr=config.learning_rate, momentum=0.5)
  optimizer_lr = torch.optim.SGD([syn_lr], lr=config.lr_learning_rate, momentum=0.5)
  buffer = [[torch.tensor(np.asarray(epoch)) for epoch in expert] for expert in _trajectories()]
  rng = random.Random(0)

  def forward(flat, x):
    parts = flat.split(sizes)
    views = {n: t.view(s) for n, t, s in zip(names, parts, shapes, strict=True)}
    return torch.func.functional_call(net, views, (x,))

  def iteration():
    expert = buffer[rng.randrange(len(buffer))]
    start_epoch = rng.randrange(config.max_start_epoch)
    start, target = expert[start_epoch], expert[start_epoch + config.expert_epochs]
    params = [start.clone().requires_grad_(True)]
    for _ in range(config.syn_steps):
      order = torch.randperm(syn.shape[0])
      x = torch_dsa.siamese(torch, syn[order], *torch_dsa.draw_op(rng))
      ce = functional.cross_entropy(forward(params[-1], x), syn_labels[order])
      grad = torch.autograd.grad(ce, params[-1], create_graph=True)[0]
      params.append(params[-1] - syn_lr * grad)
    loss = ((params[-1] - target) ** 2).sum() / ((start - target) ** 2).sum()
    optimizer_img.zero_grad()
    optimizer_lr.zero_grad()
    loss.backward()
    optimizer_img.step()
    optimizer_lr.step()

  def run(iterations: int) -> float:
    begin = time.perf_counter()
    for _ in range(iterations):
      iteration()
    return time.perf_counter() - begin

  return run


def main(argv):
  del argv
  with np.load(common.data_dir() / 'cifar10/train_1k_per_class.npz') as archive:
    images, labels = archive['images'], archive['labels']
  ours, compile_seconds, temp_remat = make_ours(images, labels, remat=True)
  sides = {'ours': ours}
  temp_kept = None
  if FLAGS.noremat:
    sides['ours-noremat'], _, temp_kept = make_ours(images, labels, remat=False)
  sides['torch'] = make_torch(images, labels)
  for run in sides.values():
    run(1)  # Warm-up.
  seconds = {name: [] for name in sides}
  for _ in range(FLAGS.repeats):
    for name, run in sides.items():
      seconds[name].append(run(FLAGS.iterations))
  config = _config(True)
  print(common.machine_line())
  print(f'MTT CIFAR-10, IPC {FLAGS.ipc}, {config.syn_steps} student steps on all '
        f'{10 * FLAGS.ipc} images; {FLAGS.iterations} it x {FLAGS.repeats} rounds; compile '
        f'(ours) {compile_seconds:.1f} s')  # fmt: skip
  temp = f'XLA temp buffers per iteration: remat {temp_remat / 2**20:.1f} MiB'
  if temp_kept is not None:
    temp += f', without remat {temp_kept / 2**20:.1f} MiB'
  print(temp)
  rates = {name: FLAGS.iterations / statistics.median(times) for name, times in seconds.items()}
  for name, rate in rates.items():
    print(f'{name:13s} {rate:8.3f} it/s  {rate / rates["torch"]:.2f}x  rounds {seconds[name]}')


if __name__ == '__main__':
  app.run(main)

"""How close our PGD gets to the CPU's achievable ConvNet throughput.

FLOPs per image of BEARD's ConvNet-128-3 on 32 px CIFAR-10 are counted
analytically (3×3 convs and the linear layer, 2 FLOPs per multiply-add; norm,
ReLU and pooling are ignored, < 1 %). A conv at s×s with C_in → C_out costs
2·s²·9·C_in·C_out forward, as much again for the input gradient and again for
the kernel gradient.

Measured at `--batch_size` (the BEARD checkpoint, real CIFAR-10 test images):
* our jitted forward, forward + input gradient (what an attack step does) and
  forward + parameter gradient (a training step), and the same on PyTorch;
* each 3×3 conv alone (forward and input gradient), to show where time goes;
* a large float32 matmul, as a rough ceiling of the machine;
* our PGD-10 program (clean forward, 10 × forward + input gradient, adversarial
  forward) → its achieved GFLOP/s and the share of our fwd+bwd GFLOP/s it reaches.

  BEARD_DATA_DIR=../shared/data .venv/bin/python bench/bench_ceiling.py --repeats=5
"""

from __future__ import annotations

import common  # bench-local: puts the repo root on sys.path
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from attacks import get_attack
from beard_jax.models.conv import conv3x3_same
from beard_jax.protocols import BEARD

FLAGS = flags.FLAGS
flags.DEFINE_integer('batch_size', 250, 'images per call')
flags.DEFINE_integer('repeats', 5, 'timed calls per measurement (medians reported)')
flags.DEFINE_integer('matmul_size', 2048, 'side of the square matmul ceiling')


def conv_layers(width=128, depth=3, size=32, channels=3) -> list[tuple[int, int, int]]:
  """[(side, C_in, C_out)] of the ConvNet's 3×3 convs."""
  layers = []
  for _ in range(depth):
    layers.append((size, channels, width))
    channels, size = width, size // 2
  return layers


def flops_per_image(width=128, depth=3, size=32, channels=3, classes=10) -> dict[str, float]:
  """Analytic FLOPs per image: forward, input gradient and parameter gradient."""
  convs = [
    2.0 * s * s * 9 * cin * cout for s, cin, cout in conv_layers(width, depth, size, channels)
  ]
  features = width * (size // 2**depth) ** 2
  linear = 2.0 * features * classes
  forward = sum(convs) + linear
  grad_input = sum(convs) + linear  # every layer's input gradient, the image's included
  grad_params = sum(convs) + linear
  return {
    'forward': forward,
    'fwd+bwd_x': forward + grad_input,
    'train step': forward + grad_input - convs[0] + grad_params,  # no image gradient
  }


def rate(seconds: float, batch: int, flops: float) -> tuple[float, float]:
  """(images/s, GFLOP/s) of a call on `batch` images costing `flops` each."""
  return batch / seconds, batch * flops / seconds / 1e9


def timed(fns: dict, repeats: int) -> dict[str, float]:
  for fn in fns.values():
    fn()
  return {k: common.median(v) for k, v in common.time_alternating(fns, repeats).items()}


def main(argv):
  del argv
  batch, repeats = FLAGS.batch_size, FLAGS.repeats
  models = common.load_models()
  images = common.load_test_images(batch)
  flops = flops_per_image()
  params, apply_fn = models.params, models.apply_fn
  x, y = jnp.asarray(images.nhwc), jnp.asarray(images.labels)

  def loss(params, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(apply_fn(params, x), y).sum()

  forward, _ = common.compile_jit(apply_fn, params, x)
  grad_x, _ = common.compile_jit(jax.grad(loss, argnums=1), params, x, y)
  grad_p, _ = common.compile_jit(jax.grad(loss, argnums=0), params, x, y)
  attack = get_attack('pgd', **BEARD.attack_hparams['pgd'])

  def pgd_program(params, x, y, key):
    clean = jnp.argmax(apply_fn(params, x), -1)
    adv = jnp.argmax(apply_fn(params, attack(apply_fn, params, x, y, key)), -1)
    return clean, adv

  key = jax.random.key(0)
  pgd, pgd_compile = common.compile_jit(pgd_program, params, x, y, key)

  torch = common.import_torch()
  net = models.torch_model
  xt = common.to_torch(images.nchw)
  yt = common.to_torch(images.labels.astype(np.int64))

  def torch_forward():
    with torch.no_grad():
      net(xt)
    common.torch_sync()

  def torch_grad_x():
    xg = xt.clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(net(xg), yt, reduction='sum').backward()
    common.torch_sync()

  def torch_grad_p():
    for p in net.parameters():
      p.requires_grad_(True)
    torch.nn.functional.cross_entropy(net(xt), yt, reduction='sum').backward()
    for p in net.parameters():
      p.requires_grad_(False)
      p.grad = None
    common.torch_sync()

  t = timed(
    {
      'ours forward': lambda: common.block(forward(params, x)),
      'theirs forward': torch_forward,
      'ours fwd+bwd_x': lambda: common.block(grad_x(params, x, y)),
      'theirs fwd+bwd_x': torch_grad_x,
      'ours train step': lambda: common.block(grad_p(params, x, y)),
      'theirs train step': torch_grad_p,
      'ours PGD-10': lambda: common.block(pgd(params, x, y, key)),
    },
    repeats,
  )
  pgd_flops = 10 * flops['fwd+bwd_x'] + 2 * flops['forward']
  print(common.machine_line())
  print(
    f'batch {batch}, {repeats} repeats, medians; analytic MFLOP/image: '
    + ', '.join(f'{k} {v / 1e6:.1f}' for k, v in flops.items())
    + f', PGD-10 program {pgd_flops / 1e6:.1f}'
  )
  rows = []
  for name, per_image in (
    ('forward', flops['forward']),
    ('fwd+bwd_x', flops['fwd+bwd_x']),
    ('train step', flops['train step']),
  ):
    ours_ips, ours_gf = rate(t[f'ours {name}'], batch, per_image)
    theirs_ips, theirs_gf = rate(t[f'theirs {name}'], batch, per_image)
    rows.append([name, per_image / 1e6, ours_ips, ours_gf, theirs_ips, theirs_gf])
  pgd_ips, pgd_gf = rate(t['ours PGD-10'], batch, pgd_flops)
  rows.append(['PGD-10 program', pgd_flops / 1e6, pgd_ips, pgd_gf, float('nan'), float('nan')])
  header = [
    'computation',
    'MFLOP/img',
    'ours img/s',
    'ours GFLOP/s',
    'theirs img/s',
    'theirs GFLOP/s',
  ]
  print(common.format_table(header, rows))
  fwd_bwd_gf = rate(t['ours fwd+bwd_x'], batch, flops['fwd+bwd_x'])[1]
  print(
    f'\nPGD-10 reaches {100 * pgd_gf / fwd_bwd_gf:.0f} % of our standalone fwd+bwd_x GFLOP/s '
    f'(compile {pgd_compile:.1f} s)'
  )
  print_layers(batch, repeats)
  print_matmul(repeats)


def print_layers(batch: int, repeats: int) -> None:
  """Each conv alone (our custom-VJP conv): forward, and input gradient alone, at `batch`.

  The input gradient of a conv does not need its forward output, so XLA drops the
  forward from the `bwd_x` program: it times the gradient convolution only.
  """
  rows = []
  rng = np.random.default_rng(0)
  for side, cin, cout in conv_layers():
    x = jnp.asarray(rng.standard_normal((batch, side, side, cin)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, cin, cout)) * 0.05, jnp.float32)
    fwd, _ = common.compile_jit(conv3x3_same, x, k)
    g = jnp.ones((batch, side, side, cout), jnp.float32)
    bwd_x, _ = common.compile_jit(lambda x, k, g: jax.vjp(conv3x3_same, x, k)[1](g)[0], x, k, g)
    t = timed(
      {
        'fwd': lambda fwd=fwd, x=x, k=k: common.block(fwd(x, k)),
        'bwd_x': lambda bwd_x=bwd_x, x=x, k=k, g=g: common.block(bwd_x(x, k, g)),
      },
      repeats,
    )
    per_image = 2.0 * side * side * 9 * cin * cout
    rows.append(
      [
        f'{side}px {cin}->{cout}',
        per_image / 1e6,
        1000 * t['fwd'],
        rate(t['fwd'], batch, per_image)[1],
        1000 * t['bwd_x'],
        rate(t['bwd_x'], batch, per_image)[1],
      ]
    )
  print('\nEach conv alone (ours), batch', batch)
  header = ['conv', 'MFLOP/img (each)', 'fwd ms', 'fwd GFLOP/s', 'bwd_x ms', 'bwd_x GFLOP/s']
  print(common.format_table(header, rows))


def print_matmul(repeats: int) -> None:
  n = FLAGS.matmul_size
  a = jnp.ones((n, n), jnp.float32)
  mm, _ = common.compile_jit(jnp.dot, a, a)
  seconds = timed({'mm': lambda: common.block(mm(a, a))}, repeats)['mm']
  backend = jax.default_backend().upper()
  gflops = 2 * n**3 / seconds / 1e9
  print(f'\nmatmul {n}x{n} float32 (ours, XLA:{backend}): {gflops:.1f} GFLOP/s')


if __name__ == '__main__':
  app.run(main)

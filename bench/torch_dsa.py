"""A compact Siamese DSA in PyTorch for the distillation benchmarks' reference loops.

One op and one parameter draw per call (`draw`), applied the same way to every image of
the batch, as DSA's Siamese mode does for the real and synthetic batch of a class. What
differs from the official `DiffAugment`: draws come from `random` (`draw_op`), `scale` and
`rotate` use `grid_sample(align_corners=False)`, `crop` pads with `F.pad`; the work per
op is the same order. Not a test helper: nothing here is checked against the official code.
"""

from __future__ import annotations

import math
import random

STRATEGY = 'color_crop_cutout_flip_scale_rotate'


def siamese(torch, x, op: str, draw: dict):
  """DSA op `op` with the per-batch parameters `draw` on an NCHW batch."""
  functional = torch.nn.functional
  if op == 'color':
    x = x + (draw['b'] - 0.5)
    pixel_mean = x.mean(dim=1, keepdim=True)
    x = (x - pixel_mean) * (draw['s'] * 2.0) + pixel_mean
    image_mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - image_mean) * (draw['c'] + 0.5) + image_mean
  if op == 'crop':
    size = x.shape[-1]
    padded = functional.pad(x, (4, 4, 4, 4))
    top, left = 4 + draw['dy'], 4 + draw['dx']
    return padded[:, :, top : top + size, left : left + size]
  if op == 'cutout':
    x = x.clone()
    y0, x0 = max(draw['cy'] - 8, 0), max(draw['cx'] - 8, 0)
    x[:, :, y0 : draw['cy'] + 8, x0 : draw['cx'] + 8] = 0
    return x
  if op == 'flip':
    return x.flip(3) if draw['f'] < 0.5 else x
  if op == 'scale':
    theta = [[draw['sx'], 0.0, 0.0], [0.0, draw['sy'], 0.0]]
  else:  # rotate
    angle = (draw['r'] - 0.5) * 2 * 15 / 180 * math.pi
    theta = [[math.cos(angle), -math.sin(angle), 0.0], [math.sin(angle), math.cos(angle), 0.0]]
  theta = torch.tensor([theta], dtype=x.dtype).expand(x.shape[0], 2, 3)
  grid = functional.affine_grid(theta, list(x.shape), align_corners=False)
  return functional.grid_sample(x, grid, align_corners=False)


def draw_op(rng: random.Random) -> tuple[str, dict]:
  op = rng.choice(STRATEGY.split('_'))
  draw = {
    'b': rng.random(),
    's': rng.random(),
    'c': rng.random(),
    'dy': rng.randint(-4, 4),
    'dx': rng.randint(-4, 4),
    'cy': rng.randint(0, 32),
    'cx': rng.randint(0, 32),
    'f': rng.random(),
    'sx': rng.uniform(1 / 1.2, 1.2),
    'sy': rng.uniform(1 / 1.2, 1.2),
    'r': rng.random(),
  }
  return op, draw

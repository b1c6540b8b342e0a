"""PGD: projected gradient descent, L∞ and L2.

Reference: Madry, Makelov, Schmidt, Tsipras & Vladu, "Towards Deep Learning
Models Resistant to Adversarial Attacks", ICLR 2018 (arXiv:1706.06083).
Reference code: torchattacks 3.5.1 `PGD(model, eps=8/255, alpha=2/255,
steps=10, random_start=True)` and `PGDL2(model, eps=1.0, alpha=0.2, steps=10,
random_start=True, eps_for_division=1e-10)`.

Where torchattacks departs from the paper (reproduced here):
- L∞ random start is U(-eps, eps) then the box clamp (the paper: uniform in the
  ball, no explicit box).
- L2 random start is a Gaussian direction scaled to radius r·eps with
  r ~ U(0, 1) per sample (not uniform in the ball's volume).
- L2 step: `g / (||g|| + 1e-10)` of the *batch-mean* loss's gradient (so the
  1e-10 acts on a gradient scaled by 1/B), then the projection
  `delta · min(eps/||delta||, 1)`, then the box clamp.
- The box [0, 1] is clamped after every step whatever space the input is in
  (BEARD's `beard` protocol attacks normalised tensors with this clamp).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from attacks.losses import attack_objective_grad, get_loss
from attacks.projections import (
  clip_box,
  normalize_l2,
  project_l2,
  project_linf,
  random_l2,
  random_linf,
)


def _make_pgd(
  norm,
  eps,
  step_size,
  steps,
  random_start,
  targeted,
  loss,
  clip_min,
  clip_max,
  eps_for_division=1e-10,
):
  loss_fn = get_loss(loss)

  def attack(apply_fn, params, x, y, key):
    x = jnp.asarray(x, jnp.float32)
    y = jnp.asarray(y)
    x_adv = x
    if random_start:
      noise = random_linf(key, x.shape, eps) if norm == 'linf' else random_l2(key, x.shape, eps)
      x_adv = clip_box(x + noise, clip_min, clip_max)

    def step(_, x_adv):
      grad, _ = attack_objective_grad(apply_fn, params, x_adv, y, loss_fn, targeted)
      if norm == 'linf':
        x_adv = project_linf(x_adv + step_size * jnp.sign(grad), x, eps)
      else:
        x_adv = project_l2(x_adv + step_size * normalize_l2(grad, eps_for_division), x, eps)
      return clip_box(x_adv, clip_min, clip_max)

    return jax.lax.fori_loop(0, steps, step, x_adv)

  return attack


def make_pgd(
  eps: float = 8 / 255,
  step_size: float = 2 / 255,
  steps: int = 10,
  random_start: bool = True,
  targeted: bool = False,
  loss: str = 'ce',
  clip_min: float = 0.0,
  clip_max: float = 1.0,
):
  """Builds L∞ PGD (torchattacks `PGD`; `step_size` is its `alpha`).

  Each step: `x ← clip_box(proj_{L∞, eps}(x + step_size · sign(∇L)))`.

  Args:
    eps: L∞ radius in the input space's units (BEARD: 8/255).
    step_size: L∞ step (BEARD's code: 2/225, a typo for 2/255).
    steps: number of gradient steps (≥ 0).
    random_start: start from clip_box(x + U(-eps, eps)).
    targeted: y are targets; descend the loss towards them.
    loss: per-sample loss from `attacks.losses.LOSSES` ('ce' as torchattacks).
    clip_min: lower end of the box clamped to after every step.
    clip_max: upper end of the box.

  Returns:
    `attack(apply_fn, params, x, y, key) -> x_adv`: x [B, H, W, C] float32,
    y [B] int32, key for the random start; x_adv [B, H, W, C] float32 within
    eps of x (L∞) and inside the box.
  """
  return _make_pgd('linf', eps, step_size, steps, random_start, targeted, loss, clip_min, clip_max)


def make_pgd_l2(
  eps: float = 1.0,
  step_size: float = 0.2,
  steps: int = 10,
  random_start: bool = True,
  targeted: bool = False,
  loss: str = 'ce',
  eps_for_division: float = 1e-10,
  clip_min: float = 0.0,
  clip_max: float = 1.0,
):
  """Builds L2 PGD (torchattacks `PGDL2`; `step_size` is its `alpha`).

  Each step: `x ← clip_box(proj_{L2, eps}(x + step_size · g / (||g|| + eps_for_division)))`
  with g the gradient of the batch-mean loss.

  Args:
    eps: L2 radius per sample (BEARD: 128/255).
    step_size: L2 step length (BEARD: 15/255).
    steps: number of gradient steps (≥ 0).
    random_start: torchattacks' Gaussian-direction start of radius U(0, 1)·eps.
    targeted: y are targets; descend the loss towards them.
    loss: per-sample loss from `attacks.losses.LOSSES`.
    eps_for_division: added to the gradient norm before dividing.
    clip_min: lower end of the box clamped to after every step.
    clip_max: upper end of the box.

  Returns:
    `attack(apply_fn, params, x, y, key) -> x_adv`: x [B, H, W, C] float32,
    y [B] int32, key for the random start; x_adv [B, H, W, C] float32 within
    eps of x (L2, per sample) and inside the box.
  """
  return _make_pgd(
    'l2',
    eps,
    step_size,
    steps,
    random_start,
    targeted,
    loss,
    clip_min,
    clip_max,
    eps_for_division,
  )

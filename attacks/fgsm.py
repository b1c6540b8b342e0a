"""FGSM: the fast gradient sign method (L∞, one step).

Reference: Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial
Examples", ICLR 2015 (arXiv:1412.6572). Reference code: torchattacks 3.5.1
`FGSM(model, eps=8/255)`.

`x_adv = clip(x + eps · sign(∇_x L(x, y)), clip_min, clip_max)` with L the
batch-mean cross-entropy; targeted: `x - eps · sign(∇_x L(x, t))`. torchattacks
follows the paper, adding only the final clamp to the [0, 1] box (which it
applies whatever space the input is in; BEARD's `beard` protocol relies on it).
"""

from __future__ import annotations

import jax.numpy as jnp

from attacks.losses import attack_objective_grad, get_loss
from attacks.projections import clip_box


def make_fgsm(
  eps: float = 8 / 255,
  targeted: bool = False,
  loss: str = 'ce',
  clip_min: float = 0.0,
  clip_max: float = 1.0,
):
  """Builds FGSM.

  Args:
    eps: L∞ step (and radius), in the units of the attack's input space.
    targeted: y are targets and the step descends the loss towards them.
    loss: per-sample loss name from `attacks.losses.LOSSES` ('ce' as torchattacks).
    clip_min: lower end of the box the result is clamped to.
    clip_max: upper end of the box.

  Returns:
    `attack(apply_fn, params, x, y, key) -> x_adv`: x [B, H, W, C] float32,
    y [B] int32, key unused; x_adv [B, H, W, C] float32 in [clip_min, clip_max].
  """
  loss_fn = get_loss(loss)

  def attack(apply_fn, params, x, y, key):
    del key  # deterministic
    x = jnp.asarray(x, jnp.float32)
    grad, _ = attack_objective_grad(apply_fn, params, x, jnp.asarray(y), loss_fn, targeted)
    return clip_box(x + eps * jnp.sign(grad), clip_min, clip_max)

  return attack


__all__ = ['make_fgsm']

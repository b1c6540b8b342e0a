"""AutoAttack, L∞, 'standard' version: APGD-CE → APGD-T → FAB-T → Square.

Reference: F. Croce and M. Hein, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks", ICML 2020, §5.

The stages run in order; each one attacks only the points every earlier stage left correctly
classified, and a point's output is the first successful stage's point (the clean input where
none succeeded): robust accuracy is the worst case over the four attacks, per sample. Here every
stage runs over the whole batch with a mask of the points still robust (fixed shapes for jit
and vmap); a masked-out point costs compute but its result is discarded.

Two variants:
- `'standard'`, as the authors' AutoAttack runs it: APGD-CE (100 iterations, 1 restart), APGD-T
  (100 iterations, 9 target classes), FAB-T (100 iterations, 9 target classes), Square (5,000
  queries, p_init 0.8, schedule not rescaled).
- `'torchattacks'`, what BEARD ran (torchattacks 3.5.1 `AutoAttack(version='standard')`): the
  same four stages, but torchattacks never passes a step count, so APGD, APGD-T and FAB-T run
  their class defaults of **10** iterations; Square keeps 5,000 queries with its schedule
  rescaled to them (`resc_schedule=True`); every sub-attack is seeded with `time.time()` unless a
  seed is given (here: the key). Each sub-attack also sees only the still-robust points
  (`MultiAttack`).

Untargeted only (AutoAttack defines no targeted ensemble; BEARD reports AA untargeted only).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from attacks import targets
from attacks.apgd import apgd_masked, apgd_t_masked
from attacks.fab import fab_t_masked
from attacks.square import square_masked

Attack = Callable[..., jax.Array]

VARIANTS = {
  'standard': {'steps': 100, 'n_queries': 5000, 'rescale_schedule': False},
  'torchattacks': {'steps': 10, 'n_queries': 5000, 'rescale_schedule': True},
}
STAGES = ('apgd_ce', 'apgd_t', 'fab_t', 'square')


def make_autoattack(
  eps: float = 8 / 255,
  variant: str = 'standard',
  steps: int | None = None,
  n_queries: int | None = None,
  n_target_classes: int = 9,
  clip_min: float = 0.0,
  clip_max: float = 1.0,
) -> Attack:
  """AutoAttack 'standard', L∞ (see the module docstring).

  Args:
    eps: L∞ radius (8/255).
    variant: `'standard'` (the authors') or `'torchattacks'` (BEARD's), see `VARIANTS`.
    steps: overrides the variant's iterations of APGD-CE, APGD-T and FAB-T.
    n_queries: overrides the variant's Square queries.
    n_target_classes: target classes of APGD-T and FAB-T, ≤ K − 1 (9).
    clip_min, clip_max: the box (0, 1).

  Returns:
    `attack(apply_fn, params, x, y, key) -> x_adv`: x [B, H, W, C] float32, y int32 [B] true
    labels; x_adv the first stage's successful point per sample, else x.

  Raises:
    ValueError: an unknown variant.
  """
  if variant not in VARIANTS:
    raise ValueError(f'unknown AutoAttack variant {variant!r}; choose from {sorted(VARIANTS)}')
  setting = dict(VARIANTS[variant])
  if steps is not None:
    setting['steps'] = steps
  if n_queries is not None:
    setting['n_queries'] = n_queries
  box = {'clip_min': clip_min, 'clip_max': clip_max}
  stages = {
    'apgd_ce': lambda *a: apgd_masked(
      *a, loss='ce', eps=eps, steps=setting['steps'], n_restarts=1, rho=0.75, targeted=False,
      **box,
    ),
    'apgd_t': lambda *a: apgd_t_masked(
      *a, eps=eps, steps=setting['steps'], n_restarts=1, n_target_classes=n_target_classes,
      rho=0.75, **box,
    ),
    'fab_t': lambda *a: fab_t_masked(
      *a, eps=eps, steps=setting['steps'], n_restarts=1, n_target_classes=n_target_classes,
      alpha_max=0.1, eta=1.05, beta=0.9, **box,
    ),
    'square': lambda *a: square_masked(
      *a, eps=eps, n_queries=setting['n_queries'], p_init=0.8,
      rescale_schedule=setting['rescale_schedule'], targeted=False, **box,
    ),
  }  # fmt: skip

  def attack(apply_fn, params, x, y, key) -> jax.Array:
    x = jnp.asarray(x, jnp.float32)
    y = jnp.asarray(y, jnp.int32)
    targets.check_target_count(apply_fn, params, x, n_target_classes)
    robust = jnp.argmax(apply_fn(params, x), axis=-1) == y
    x_out = x
    for i, name in enumerate(STAGES):
      adv, _ = stages[name](apply_fn, params, x, y, jax.random.fold_in(key, i), robust)
      fooled = robust & (jnp.argmax(apply_fn(params, adv), axis=-1) != y)
      x_out = jnp.where(fooled[:, None, None, None], adv, x_out)
      robust = robust & ~fooled
    return x_out

  return attack

"""AutoAttack, L∞, 'standard' version: APGD-CE → APGD-T → FAB-T → Square.

Reference: F. Croce and M. Hein, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks", ICML 2020, §5.

The stages run in order; each one attacks only the points every earlier stage left correctly
classified, and a point's output is the first successful stage's point (the clean input where
none succeeded): robust accuracy is the worst case over the four attacks, per sample. Each
stage costs what its still-robust points need, as in torchattacks, which slices them out:
APGD-CE, APGD-T and FAB-T run on the still-robust points only, `chunk` at a time
(`attacks.work_queue.run_on_active`), and Square keeps them in its work queue of `slots`.
Once nothing is robust, the later stages attack nothing: what remains is one batched
forward pass per stage check and Square's two batched queries.

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

Targeted (`targeted=True`, y the targets). The authors define no user-targeted ensemble (their
APGD-T and FAB-T pick target classes themselves to find *any* misclassification); here the
same four stages run against each sample's given target: APGD-CE on −CE(target), APGD-T as
APGD on the targeted DLR loss (the clean prediction as the source class), FAB towards the
target, Square on the targeted margin. A sample counts as fooled when it is classified as
its target; each stage attacks only the samples no earlier stage brought there. BEARD reports
AutoAttack untargeted only (its `beard` protocol keeps that).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from attacks import targets, work_queue
from attacks.apgd import apgd_masked, apgd_t_masked
from attacks.base import Attack, check_batch, is_success, keep_first_success
from attacks.fab import fab_t_masked, fab_to_target_masked
from attacks.square import square_masked

VARIANTS = {
  'standard': {'steps': 100, 'n_queries': 5000, 'rescale_schedule': False},
  'torchattacks': {'steps': 10, 'n_queries': 5000, 'rescale_schedule': True},
}
STAGES = ('apgd_ce', 'apgd_t', 'fab_t', 'square')
CHUNKED = frozenset({'apgd_ce', 'apgd_t', 'fab_t'})
"""The stages run through `work_queue.run_on_active` (per-sample keys); Square takes the key."""


def _untargeted_stages(eps, setting, n_target_classes, box, slots) -> dict[str, Callable]:
  """The authors' stages, `(apply_fn, params, x, y, keys, active) -> (x_adv, still)`: APGD-CE,
  APGD-T and FAB-T are `work_queue.Stage`s (per-sample keys); Square takes the batch key."""
  steps = setting['steps']
  return {
    'apgd_ce': lambda *a: apgd_masked(
      *a, loss='ce', eps=eps, steps=steps, n_restarts=1, rho=0.75, targeted=False, **box,
    ),
    'apgd_t': lambda *a: apgd_t_masked(
      *a, eps=eps, steps=steps, n_restarts=1, n_target_classes=n_target_classes, rho=0.75,
      **box,
    ),
    'fab_t': lambda *a: fab_t_masked(
      *a, eps=eps, steps=steps, n_restarts=1, n_target_classes=n_target_classes,
      alpha_max=0.1, eta=1.05, beta=0.9, **box,
    ),
    'square': lambda *a: square_masked(
      *a, eps=eps, n_queries=setting['n_queries'], p_init=0.8,
      rescale_schedule=setting['rescale_schedule'], targeted=False, slots=slots, **box,
    ),
  }  # fmt: skip


def _given_target_stages(eps, setting, box, slots) -> dict[str, Callable]:
  """The same four stages against the given targets (y holds them; module docstring)."""
  steps = setting['steps']
  return {
    'apgd_ce': lambda *a: apgd_masked(
      *a, loss='ce', eps=eps, steps=steps, n_restarts=1, rho=0.75, targeted=True, **box,
    ),
    'apgd_t': lambda *a: apgd_masked(
      *a, loss='dlr', eps=eps, steps=steps, n_restarts=1, rho=0.75, targeted=True, **box,
    ),
    'fab_t': lambda *a: fab_to_target_masked(
      *a, eps=eps, steps=steps, n_restarts=1, alpha_max=0.1, eta=1.05, beta=0.9, **box,
    ),
    'square': lambda *a: square_masked(
      *a, eps=eps, n_queries=setting['n_queries'], p_init=0.8,
      rescale_schedule=setting['rescale_schedule'], targeted=True, slots=slots, **box,
    ),
  }  # fmt: skip


def make_autoattack(
  eps: float = 8 / 255,
  variant: str = 'standard',
  steps: int | None = None,
  n_queries: int | None = None,
  n_target_classes: int = 9,
  targeted: bool = False,
  slots: int | None = None,
  chunk: int | None = None,
  clip_min: float = 0.0,
  clip_max: float = 1.0,
) -> Attack:
  """AutoAttack 'standard', L∞ (see the module docstring).

  Args:
    eps: L∞ radius (8/255).
    variant: `'standard'` (the authors') or `'torchattacks'` (BEARD's), see `VARIANTS`.
    steps: overrides the variant's iterations of APGD-CE, APGD-T and FAB-T.
    n_queries: overrides the variant's Square queries.
    n_target_classes: target classes of APGD-T and FAB-T, ≤ K − 1 (9); unused when targeted.
    targeted: y are the targets; the stages attack them (module docstring).
    slots: samples in flight in the Square stage (`attacks.square.default_slots` if None).
    chunk: samples attacked at once in the APGD-CE, APGD-T and FAB-T stages
      (`attacks.work_queue.default_chunk` if None); results depend on it only through rounding.
    clip_min, clip_max: the box (0, 1).

  Returns:
    `attack(apply_fn, params, x, y, key) -> x_adv`: x [B, H, W, C] float32, y int32 [B] true
    labels (or targets); x_adv the first stage's successful point per sample, else x.

  Raises:
    ValueError: an unknown variant, or chunk < 1.
  """
  if variant not in VARIANTS:
    raise ValueError(f'unknown AutoAttack variant {variant!r}; choose from {sorted(VARIANTS)}')
  work_queue.check_chunk(chunk)
  setting = dict(VARIANTS[variant])
  if steps is not None:
    setting['steps'] = steps
  if n_queries is not None:
    setting['n_queries'] = n_queries
  box = {'clip_min': clip_min, 'clip_max': clip_max}
  if targeted:
    stages = _given_target_stages(eps, setting, box, slots)
  else:
    stages = _untargeted_stages(eps, setting, n_target_classes, box, slots)

  def attack(apply_fn, params, x, y, key) -> jax.Array:
    x = jnp.asarray(x, jnp.float32)
    y = jnp.asarray(y, jnp.int32)
    check_batch(x, y)
    if not targeted:
      targets.check_target_count(apply_fn, params, x, n_target_classes)
    robust = ~is_success(apply_fn(params, x), y, targeted)
    x_out = x
    for i, name in enumerate(STAGES):
      args = (apply_fn, params, x, y, jax.random.fold_in(key, i), robust)
      if name in CHUNKED:
        adv, _ = work_queue.run_on_active(stages[name], chunk, *args)
      else:
        adv, _ = stages[name](*args)
      fooled = is_success(apply_fn(params, adv), y, targeted)
      x_out, robust = keep_first_success(x_out, robust, adv, fooled)
    return x_out

  return attack

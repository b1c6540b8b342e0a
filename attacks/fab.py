"""FAB-T: the targeted Fast Adaptive Boundary attack, L∞, as AutoAttack runs it.

Reference: F. Croce and M. Hein, "Minimally distorted adversarial examples with a fast
adaptive boundary attack", ICML 2020 (Algorithm 1 and §3), in the multi-targeted form of
"Reliable evaluation of adversarial robustness..." (ICML 2020), where it is one AutoAttack stage.

Per target class t (the 2nd … (n_target_classes+1)-th largest clean logit) and per step:
1. linearise the boundary between y and t at the iterate x_k: the hyperplane
   {z : f_t(x_k) − f_y(x_k) + ∇(f_t − f_y)(x_k)·(z − x_k) = 0};
2. project both x_k and the original x onto it under the L∞ norm *inside the box*
   (the exact minimal-L∞ box-constrained projection, by sorting and bisection): δ_k, δ_orig;
3. x_{k+1} = clip((1 − α)(x_k + η δ_k) + α(x + η δ_orig)),
   α = min(‖δ_k‖∞ / (‖δ_k‖∞ + ‖δ_orig‖∞), α_max) (the adaptive bias towards x);
4. if x_{k+1} is misclassified: remember it when it is the closest adversarial so far, then
   step back towards x: x_{k+1} ← x + β(x_{k+1} − x).
A point counts as fooled when its closest adversarial point is within ε of x. Defaults are
AutoAttack's standard ones: 100 steps, α_max 0.1, η 1.05, β 0.9, 9 target classes, 1 restart.

torchattacks 3.5.1 (`FAB(multi_targeted=True)`) follows the authors' code; what it does that
the paper leaves open, reproduced here: 10 steps by default (AutoAttack-in-torchattacks never
overrides it), the box is [0, 1] (here `clip_min`/`clip_max`), a target class attacks only the
points no earlier class fooled, and restarts after the first start from a random point at
L∞ radius ε/2. Differences: the projection's bisection is run on every row (torch runs it on
the rows that need it; same result); only L∞ is implemented.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from attacks import targets
from attacks.base import Attack, Kept, fold_each, uniform_each


def _take(a: jax.Array, idx: jax.Array) -> jax.Array:
  """a [n, d], idx [n] int → [n]."""
  return jnp.take_along_axis(a, idx[:, None], axis=1)[:, 0]


def project_linf_box(points: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
  """Smallest-L∞ step onto a hyperplane, staying in the unit box.

  Solves min ‖d‖∞ s.t. w·(p + d) = b, 0 ≤ p + d ≤ 1, per row. When the hyperplane cannot be
  reached inside the box, returns the step to the box corner that gets closest to it.

  Args:
    points: p, [n, d] float32 in [0, 1].
    w: [n, d] float32, the hyperplanes' normals.
    b: [n] float32, their offsets.

  Returns:
    d, [n, d] float32 (zero where w is zero).
  """
  n, dim = points.shape
  sign = jnp.where(jnp.sum(w * points, axis=1) - b >= 0, 1.0, -1.0)
  w = w * sign[:, None]
  b = b * sign
  # Now w·p ≥ b: decrease w·z, each coordinate moving towards its corner a (1 where w < 0).
  a = (w < 0).astype(points.dtype)
  nonzero = (w != 0).astype(points.dtype)
  d = (a - points) * nonzero
  p = a - points * (2 * a - 1)  # distance to the corner, per coordinate
  order = jnp.argsort(p, axis=1)
  b = b - jnp.sum(w * points, axis=1)  # the change of w·z needed (≤ 0)
  b0 = jnp.sum(w * d, axis=1)  # the change with every coordinate at its corner
  desc = order[:, ::-1]
  ws = jnp.take_along_axis(w, desc, axis=1)
  s = jnp.cumsum(jnp.abs(ws), axis=1)
  sb = jnp.cumsum(-ws * jnp.take_along_axis(d, desc, axis=1), axis=1) + b0[:, None]
  # With radius λ below every p: the change is −λ·Σ|w|.
  p_min = _take(p, order[:, 0])
  c_low = b - (sb[:, -1] - s[:, -1] * p_min) > 0
  c_mid = (b - b0 > 0) & ~c_low

  def bisect(_, bounds):
    lb, ub = bounds
    mid = jnp.floor((lb + ub) / 2)
    k = mid.astype(jnp.int32)
    idx = _take(order, dim - 1 - k)
    reach = _take(sb, k) - _take(s, k) * _take(p, idx)
    c = b - reach > 0
    return jnp.where(c, mid, lb), jnp.where(c, ub, mid)

  lb0 = jnp.zeros((n,), jnp.float32)
  lb, _ = jax.lax.fori_loop(
    0, math.ceil(math.log2(dim)), bisect, (lb0, jnp.full((n,), dim - 1.0, jnp.float32))
  )
  lb = lb.astype(jnp.int32)

  def safe_div(num, den):
    return num / jnp.where(den == 0, 1.0, den)

  lam_low = jnp.maximum(safe_div(b - sb[:, -1], -s[:, -1]), 0.0)[:, None]
  d_low = (2 * a - 1) * lam_low
  lam_mid = jnp.maximum(safe_div(b - _take(sb, lb), -_take(s, lb)), 0.0)[:, None]
  d_mid = jnp.minimum(lam_mid, d) * a + jnp.maximum(-lam_mid, d) * (1 - a)
  d = jnp.where(c_low[:, None], d_low, jnp.where(c_mid[:, None], d_mid, d))
  return d * nonzero


def _linf(v: jax.Array) -> jax.Array:
  return jnp.max(jnp.abs(v.reshape(v.shape[0], -1)), axis=1)


def _bcast(v: jax.Array, x: jax.Array) -> jax.Array:
  return v.reshape(v.shape + (1,) * (x.ndim - v.ndim))


class _FabState(NamedTuple):
  """The loop state of one FAB run.

  Attributes:
    iterate: [B, H, W, C], the current point.
    best: [B, H, W, C], the closest adversarial point so far (x where none).
    best_dist: [B], its L∞ distance to x (1e10 where none).
  """

  iterate: jax.Array
  best: jax.Array
  best_dist: jax.Array


def fab_targeted_run(
  apply_fn,
  params,
  x: jax.Array,
  y: jax.Array,
  target: jax.Array,
  x_start: jax.Array,
  *,
  steps: int,
  alpha_max: float,
  eta: float,
  beta: float,
  clip_min: float,
  clip_max: float,
  reach_target: bool = False,
) -> tuple[jax.Array, jax.Array]:
  """One targeted FAB run (L∞) from `x_start`.

  Args:
    apply_fn, params: the model.
    x: clean inputs [B, H, W, C] float32 in the box.
    y: the source class int32 [B] (the true label, or the clean prediction when only the
      target is known); target: target labels int32 [B]. The boundary followed is y vs target.
    x_start: the first iterate [B, H, W, C] (x itself for the first restart).
    steps, alpha_max, eta, beta: FAB's parameters.
    clip_min, clip_max: the box.
    reach_target: an iterate counts as adversarial when it is classified as `target`
      (the given-target mode); False: when it is no longer classified as `y` (FAB-T).

  Returns:
    `(adv, dist)`: the closest adversarial iterate found ([B, H, W, C]; x where none) and its
    L∞ distance to x ([B], 1e10 where none).
  """
  batch = x.shape[0]
  scale = clip_max - clip_min
  # Work in the unit box: u = (z − clip_min)/scale; the L∞ geometry only scales.
  x0 = ((x - clip_min) / scale).reshape(batch, -1)

  def logit_gap(z):
    logits = apply_fn(params, z)
    pick = lambda c: jnp.take_along_axis(logits, c[:, None], axis=1)[:, 0]  # noqa: E731
    gap = pick(target) - pick(y)
    return gap.sum(), gap

  gap_grad = jax.grad(logit_gap, has_aux=True)

  def body(_, state: _FabState) -> _FabState:
    x1, adv, dist = state
    grad, gap = gap_grad(x1)
    w = grad.reshape(batch, -1) * scale
    u1 = ((x1 - clip_min) / scale).reshape(batch, -1)
    b = -gap + jnp.sum(w * u1, axis=1)
    d3 = project_linf_box(
      jnp.concatenate([u1, x0]), jnp.concatenate([w, w]), jnp.concatenate([b, b])
    )
    norms = jnp.maximum(jnp.max(jnp.abs(d3), axis=1), 1e-8)
    n1, n2 = norms[:batch], norms[batch:]
    alpha = jnp.clip(n1 / (n1 + n2), 0.0, alpha_max)[:, None]
    u_new = jnp.clip((u1 + eta * d3[:batch]) * (1 - alpha) + (x0 + eta * d3[batch:]) * alpha, 0, 1)
    x_new = (u_new * scale + clip_min).reshape(x.shape)
    pred = jnp.argmax(apply_fn(params, x_new), axis=-1)
    is_adv = pred == target if reach_target else pred != y
    t = _linf(x_new - x)
    closer = is_adv & (t < dist)
    adv = jnp.where(_bcast(closer, x), x_new, adv)
    dist = jnp.where(closer, t, dist)
    x_new = jnp.where(_bcast(is_adv, x), x + (x_new - x) * beta, x_new)
    return _FabState(x_new, adv, dist)

  init = _FabState(x_start, x, jnp.full((batch,), 1e10, jnp.float32))
  final = jax.lax.fori_loop(0, steps, body, init)
  adv, dist = final.best, final.best_dist
  return adv, dist


def _fab_attempt(apply_fn, params, x, source, target, restart, keys, *, eps, reach_target, **fab):
  """One FAB run of restart number `restart` (a random start at radius ε/2 after the first,
  drawn from the per-sample keys [B]).

  Returns:
    `(adv [B, H, W, C], fooled [B] bool)`: fooled when the run's point is adversarial (left
    `source`, or reached `target` when `reach_target`) and within ε of x.
  """
  t = uniform_each(keys, x.shape[1:], -1.0, 1.0)
  rand = x + eps * 0.5 * t / _bcast(_linf(t), x)
  start = jnp.where(restart > 0, jnp.clip(rand, fab['clip_min'], fab['clip_max']), x)
  adv, _ = fab_targeted_run(
    apply_fn, params, x, source, target, start, reach_target=reach_target, **fab
  )
  pred = jnp.argmax(apply_fn(params, adv), axis=-1)
  hit = pred == target if reach_target else pred != source
  return adv, hit & (_linf(adv - x) <= eps)


def fab_t_masked(
  apply_fn,
  params,
  x,
  y,
  keys,
  active,
  *,
  eps: float,
  steps: int,
  n_restarts: int,
  n_target_classes: int,
  alpha_max: float,
  eta: float,
  beta: float,
  clip_min: float,
  clip_max: float,
) -> tuple[jax.Array, jax.Array]:
  """FAB-T on the points where `active` [B]; returns `(x_adv, still_robust)`.

  A `work_queue.Stage`: keys are per-sample keys [B].
  """
  logits_clean = apply_fn(params, x)
  order = jnp.argsort(logits_clean, axis=-1)
  active = active & (jnp.argmax(logits_clean, axis=-1) == y)
  fab = dict(steps=steps, alpha_max=alpha_max, eta=eta, beta=beta, clip_min=clip_min,
             clip_max=clip_max)  # fmt: skip

  def per_run(i, kept: Kept) -> Kept:
    j, r = i // n_restarts, i % n_restarts
    target = jnp.take(order, order.shape[-1] - 2 - j, axis=-1)
    adv, fooled = _fab_attempt(
      apply_fn, params, x, y, target, r, fold_each(keys, i), eps=eps,
      reach_target=False, **fab,
    )  # fmt: skip
    return kept.update(adv, fooled)

  return jax.lax.fori_loop(0, n_target_classes * n_restarts, per_run, Kept(x, active))


def fab_to_target_masked(
  apply_fn,
  params,
  x,
  y_target,
  keys,
  active,
  *,
  eps: float,
  steps: int,
  n_restarts: int,
  alpha_max: float,
  eta: float,
  beta: float,
  clip_min: float,
  clip_max: float,
) -> tuple[jax.Array, jax.Array]:
  """FAB towards given targets on the points where `active`; returns `(x_adv, not_reached)`.

  The boundary followed is the clean prediction's against the target (the contract gives
  only the targets); a point counts as fooled when it is classified as its target within ε.
  Points already classified as their target are left alone. A `work_queue.Stage`.
  """
  source = jnp.argmax(apply_fn(params, x), axis=-1)
  active = active & (source != y_target)
  fab = dict(steps=steps, alpha_max=alpha_max, eta=eta, beta=beta, clip_min=clip_min,
             clip_max=clip_max)  # fmt: skip

  def per_run(r, kept: Kept) -> Kept:
    adv, fooled = _fab_attempt(
      apply_fn, params, x, source, y_target, r, fold_each(keys, r), eps=eps,
      reach_target=True, **fab,
    )  # fmt: skip
    return kept.update(adv, fooled)

  return jax.lax.fori_loop(0, n_restarts, per_run, Kept(x, active))


def make_fab_t(
  eps: float = 8 / 255,
  steps: int = 100,
  n_restarts: int = 1,
  n_target_classes: int = 9,
  alpha_max: float = 0.1,
  eta: float = 1.05,
  beta: float = 0.9,
  targeted: bool = False,
  chunk: int | None = None,
  clip_min: float = 0.0,
  clip_max: float = 1.0,
) -> Attack:
  """FAB-T, L∞, AutoAttack's standard configuration by default (see the module docstring).

  Args:
    eps: the L∞ radius a found point must lie within to count (8/255).
    steps: FAB iterations per target class and restart (100; torchattacks' default is 10).
    n_restarts: runs per target class; runs after the first start at a random point (1).
    n_target_classes: target classes tried, ≤ K − 1 (9).
    alpha_max, eta, beta: FAB's bias cap, overshoot and backward step (0.1, 1.05, 0.9).
    targeted: y are the targets: one FAB run per restart towards each sample's own target
      (`fab_to_target_masked`), success = classified as the target within ε;
      `n_target_classes` is then unused.
    chunk: samples attacked at once; only the samples the clean point does not already fool
      are attacked (`attacks.work_queue.run_on_active`). None takes `default_chunk(batch)`.
    clip_min, clip_max: the box (0, 1).

  Returns:
    `attack(apply_fn, params, x, y, key) -> x_adv`: x [B, H, W, C] float32, y int32 [B] true
    labels (or targets); x_adv the closest adversarial point found when within ε, else x.
  """
  if eps < 0 or steps < 1 or n_restarts < 1 or n_target_classes < 1:
    raise ValueError(
      f'need eps >= 0 and steps, n_restarts, n_target_classes >= 1; found {eps}, {steps}, '
      f'{n_restarts}, {n_target_classes}'
    )

  fab = dict(eps=eps, steps=steps, n_restarts=n_restarts, alpha_max=alpha_max, eta=eta,
             beta=beta, clip_min=clip_min, clip_max=clip_max)  # fmt: skip
  if targeted:
    return targets.attack_every_point(fab_to_target_masked, chunk=chunk, reach_target=True, **fab)
  return targets.attack_every_point(
    fab_t_masked, chunk=chunk, reach_target=False, n_target_classes=n_target_classes, **fab
  )

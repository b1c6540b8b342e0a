"""Auto-PGD (APGD-CE, APGD-DLR, APGD-T), L∞.

Reference: F. Croce and M. Hein, "Reliable evaluation of adversarial robustness with
an ensemble of diverse parameter-free attacks", ICML 2020, Algorithm 1.

One APGD run with budget N iterations:
- start at x + ε·t/‖t‖∞, t ~ U(-1, 1)^d (clipped to the box), step size η = 2ε per sample;
- step: z = P(x_k + η·sign(∇)), x_{k+1} = P(x_k + α(z − x_k) + (1 − α)(x_k − x_{k-1})),
  α = 0.75 (1 for the first step), P = projection onto the ε-ball ∩ box;
- checkpoints w_j = ⌈p_j N⌉ with p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03,
  0.06): at each one, per sample, η is halved and the iterate restarts from the best point
  (and its gradient) when (1) the loss rose in at most ρ·(w_j − w_{j−1}) of the steps since the
  last checkpoint (ρ = 0.75), or (2) η was not halved at the last checkpoint and the best loss did
  not improve since then.
- the output is the last iterate that misclassified (per sample); points never fooled return x.

Details of torchattacks 3.5.1 (and of the AutoAttack authors' own code) that this module
reproduces, where the paper says otherwise or nothing:
- `steps` defaults to 10 in torchattacks (`APGD(steps=10)`) and AutoAttack-in-torchattacks never
  overrides it; the paper and the authors' AutoAttack use 100. Our default is the paper's 100.
- The checkpoint intervals are integers: first max(⌊0.22 N⌋, 1), then shrinking by
  max(⌊0.03 N⌋, 1) down to max(⌊0.06 N⌋, 1).
- Condition (1) counts "rose" as `≤ ρ·k` (the paper: `<`), and the very first step of a run is
  compared against a loss of 0 (an unfilled buffer slot), not against the starting loss.
- Condition (2) can never fire at the first checkpoint ("reduced at the last check" starts true).
- The best-loss point updates on a strict increase; the box is [0, 1] in torchattacks,
  `clip_min`/`clip_max` here.
- With several restarts, each restart attacks only the points no restart has fooled yet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from attacks import losses, targets
from attacks.base import Attack, Kept, fold_each, uniform_each


def checkpoint_schedule(steps: int) -> tuple[list[bool], list[int]]:
  """Static checkpoint schedule of an APGD run of `steps` iterations.

  Returns:
    `(is_check, interval)`: per iteration i (0-based), whether a checkpoint falls after it and
    the length k of the interval that ends there (0 where none does).
  """
  k = max(int(0.22 * steps), 1)
  k_min = max(int(0.06 * steps), 1)
  k_decr = max(int(0.03 * steps), 1)
  is_check, interval = [False] * steps, [0] * steps
  since = 0
  for i in range(steps):
    since += 1
    if since == k:
      is_check[i], interval[i] = True, k
      since = 0
      k = max(k - k_decr, k_min)
  return is_check, interval


class _State(NamedTuple):
  """One APGD run's loop state; images [B, H, W, C] float32, the rest [B].

  Attributes:
    x_adv: the current iterate; x_old the one before it.
    grad: the loss gradient at `x_adv`.
    step: float32 [B], the step size η.
    x_best: the highest-loss point so far; grad_best its gradient, loss_best its loss.
    x_best_adv: the last iterate that was adversarial (the start where none was).
    robust: bool [B], no iterate of this run was adversarial yet.
    loss_prev: float32 [B], the last step's loss.
    n_rose: float32 [B], steps since the last checkpoint where the loss rose.
    reduced_last: bool [B], η was halved at the last checkpoint.
    loss_best_last: float32 [B], `loss_best` at the last checkpoint.
  """

  x_adv: jax.Array
  x_old: jax.Array
  grad: jax.Array
  step: jax.Array
  x_best: jax.Array
  grad_best: jax.Array
  loss_best: jax.Array
  x_best_adv: jax.Array
  robust: jax.Array
  loss_prev: jax.Array
  n_rose: jax.Array
  reduced_last: jax.Array
  loss_best_last: jax.Array


def _bcast(v: jax.Array, x: jax.Array) -> jax.Array:
  return v.reshape(v.shape + (1,) * (x.ndim - v.ndim))


def _initial_state(x0, grad0, loss0, adv0, eps: float) -> _State:
  """The state at the start point x0 [B, ...] (gradient grad0, loss0 [B], adversarial adv0 [B])."""
  batch = x0.shape[0]
  return _State(
    x_adv=x0,
    x_old=x0,
    grad=grad0,
    step=jnp.full((batch,), 2.0 * eps, jnp.float32),
    x_best=x0,
    grad_best=grad0,
    loss_best=loss0,
    x_best_adv=x0,
    robust=~adv0,
    loss_prev=jnp.zeros((batch,), jnp.float32),
    n_rose=jnp.zeros((batch,), jnp.float32),
    reduced_last=jnp.ones((batch,), bool),
    loss_best_last=loss0,
  )


def _track(s: _State, x_new, loss, grad, fooled_now, is_check, k, rho: float) -> _State:
  """Records a step's point and, at a checkpoint, halves η and restarts from the best point.

  Args:
    s: the state before the step.
    x_new: [B, H, W, C], the new iterate; loss [B] and grad [B, H, W, C] there.
    fooled_now: bool [B], x_new is adversarial.
    is_check: bool scalar, a checkpoint falls after this step.
    k: float32 scalar, the length of the interval that ends here (0 if none).
    rho: the oscillation threshold ρ.

  Returns:
    The state after the step.
  """
  x_best_adv = jnp.where(_bcast(fooled_now, x_new), x_new, s.x_best_adv)
  better = loss > s.loss_best
  x_best = jnp.where(_bcast(better, x_new), x_new, s.x_best)
  grad_best = jnp.where(_bcast(better, x_new), grad, s.grad_best)
  loss_best = jnp.where(better, loss, s.loss_best)
  n_rose = s.n_rose + (loss > s.loss_prev)

  oscillating = n_rose <= k * rho
  stalled = ~s.reduced_last & (s.loss_best_last >= loss_best)
  reduce = is_check & (oscillating | stalled)
  return _State(
    x_adv=jnp.where(_bcast(reduce, x_new), x_best, x_new),
    x_old=s.x_adv,
    grad=jnp.where(_bcast(reduce, x_new), grad_best, grad),
    step=jnp.where(reduce, s.step / 2.0, s.step),
    x_best=x_best,
    grad_best=grad_best,
    loss_best=loss_best,
    x_best_adv=x_best_adv,
    robust=s.robust & ~fooled_now,
    loss_prev=loss,
    n_rose=jnp.where(is_check, 0.0, n_rose),
    reduced_last=jnp.where(is_check, reduce, s.reduced_last),
    loss_best_last=jnp.where(is_check, loss_best, s.loss_best_last),
  )


def apgd_run(
  apply_fn: Callable,
  params,
  x: jax.Array,
  x_init: jax.Array,
  loss_fn: Callable[[jax.Array], jax.Array],
  is_adv_fn: Callable[[jax.Array], jax.Array],
  *,
  eps: float,
  steps: int,
  rho: float = 0.75,
  momentum: float = 0.75,
  clip_min: float = 0.0,
  clip_max: float = 1.0,
) -> tuple[jax.Array, jax.Array]:
  """One APGD run from a given starting point (the building block of every APGD variant).

  Args:
    apply_fn: `apply_fn(params, x) -> logits [B, K]`; samples must not interact.
    params: the model's parameter pytree.
    x: clean inputs, [B, H, W, C] float32 in [clip_min, clip_max].
    x_init: the starting point, [B, H, W, C] float32 (inside the ε-ball and box).
    loss_fn: logits [B, K] → per-sample loss [B] to maximise.
    is_adv_fn: logits [B, K] → bool [B], whether the point counts as adversarial.
    eps: L∞ radius.
    steps: iterations N (gradient evaluations after the initial one).
    rho: the oscillation threshold ρ of condition (1).
    momentum: α, the weight of the new step (0.75).
    clip_min, clip_max: the box.

  Returns:
    `(x_adv, fooled)`: x_adv [B, H, W, C], the last misclassified iterate where `fooled`, else
    the starting point; fooled bool [B].
  """
  is_check, interval = checkpoint_schedule(steps)
  is_check = jnp.asarray(is_check)
  interval = jnp.asarray(interval, jnp.float32)
  lo, hi = x - eps, x + eps

  def project(z):
    return jnp.clip(jnp.minimum(jnp.maximum(z, lo), hi), clip_min, clip_max)

  def total_loss(z):
    logits = apply_fn(params, z)
    per_sample = loss_fn(logits)
    return per_sample.sum(), (per_sample, logits)

  value_and_grad = jax.value_and_grad(total_loss, has_aux=True)

  x0 = jnp.clip(x_init, clip_min, clip_max)
  (_, (loss0, logits0)), grad0 = value_and_grad(x0)
  state = _initial_state(x0, grad0, loss0, is_adv_fn(logits0), eps)

  def body(i, s: _State) -> _State:
    alpha = jnp.where(i > 0, momentum, 1.0)
    z = project(s.x_adv + _bcast(s.step, x) * jnp.sign(s.grad))
    x_new = project(s.x_adv + alpha * (z - s.x_adv) + (1.0 - alpha) * (s.x_adv - s.x_old))
    (_, (loss, logits)), grad = value_and_grad(x_new)
    return _track(s, x_new, loss, grad, is_adv_fn(logits), is_check[i], interval[i], rho)

  state = jax.lax.fori_loop(0, steps, body, state)
  return state.x_best_adv, ~state.robust


def linf_start(keys: jax.Array, x: jax.Array, eps: float) -> jax.Array:
  """APGD's random start x + ε·t/‖t‖∞, t ~ U(-1, 1) from each sample's key (not clipped).

  Args:
    keys: [B] per-sample keys.
    x: [B, H, W, C] clean inputs.
    eps: L∞ radius.
  """
  t = uniform_each(keys, x.shape[1:], -1.0, 1.0)
  t_max = jnp.max(jnp.abs(t).reshape(x.shape[0], -1), axis=1)
  return x + eps * t / _bcast(t_max, x)


def _restarts(x, keys, active, run_one, n_restarts: int) -> Kept:
  """Runs `run_one(keys) -> (x_adv, fooled)` n_restarts times; the first success per sample wins.

  Args:
    x: [B, H, W, C], the points kept where no restart succeeds.
    keys: [B] per-sample keys; restart r uses `fold_each(keys, r)`.
    active: bool [B], the samples to attack.
    run_one: one run, returning x_adv [B, H, W, C] and fooled bool [B].
    n_restarts: how many runs.

  Returns:
    `Kept(x_out, robust)`: robust are the active samples no restart fooled.
  """

  def body(r, kept: Kept) -> Kept:
    return kept.update(*run_one(fold_each(keys, r)))

  return jax.lax.fori_loop(0, n_restarts, body, Kept(x, active))


def apgd_masked(
  apply_fn,
  params,
  x,
  y,
  keys,
  active,
  *,
  loss: str,
  eps: float,
  steps: int,
  n_restarts: int,
  rho: float,
  targeted: bool,
  clip_min: float,
  clip_max: float,
  x_init: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
  """APGD-CE / APGD-DLR on the points where `active` [B] bool; returns `(x_adv, still_robust)`.

  Without `x_init`, a `work_queue.Stage`: keys are per-sample keys [B] (`x_init` [B, ...] is
  not gathered per chunk; only a direct call may pass it).
  """
  logits_clean = apply_fn(params, x)
  if targeted:
    y_pred = jnp.argmax(logits_clean, axis=-1)
    loss_fn = {
      'ce': lambda z: -losses.cross_entropy(z, y),
      'dlr': lambda z: losses.dlr_targeted(z, y_pred, y),
    }[loss]

    def is_adv_fn(z):
      return jnp.argmax(z, axis=-1) == y
  else:
    loss_fn = {
      'ce': lambda z: losses.cross_entropy(z, y),
      'dlr': lambda z: losses.dlr(z, y),
    }[loss]

    def is_adv_fn(z):
      return jnp.argmax(z, axis=-1) != y

  active = active & ~is_adv_fn(logits_clean)

  def run_one(k):
    start = linf_start(k, x, eps) if x_init is None else x_init
    return apgd_run(
      apply_fn,
      params,
      x,
      start,
      loss_fn,
      is_adv_fn,
      eps=eps,
      steps=steps,
      rho=rho,
      clip_min=clip_min,
      clip_max=clip_max,
    )

  return _restarts(x, keys, active, run_one, n_restarts)


def apgd_t_masked(
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
  rho: float,
  clip_min: float,
  clip_max: float,
) -> tuple[jax.Array, jax.Array]:
  """APGD-T on the points where `active`; returns `(x_adv, still_robust)` (a `work_queue.Stage`)."""
  logits_clean = apply_fn(params, x)
  order = jnp.argsort(logits_clean, axis=-1)  # ascending
  active = active & (jnp.argmax(logits_clean, axis=-1) == y)

  def is_adv_fn(z):
    return jnp.argmax(z, axis=-1) != y

  def per_target(j, kept: Kept) -> Kept:
    target = jnp.take(order, order.shape[-1] - 2 - j, axis=-1)

    def run_one(k):
      return apgd_run(
        apply_fn,
        params,
        x,
        linf_start(k, x, eps),
        lambda z: losses.dlr_targeted(z, y, target),
        is_adv_fn,
        eps=eps,
        steps=steps,
        rho=rho,
        clip_min=clip_min,
        clip_max=clip_max,
      )

    adv, left = _restarts(x, fold_each(keys, j), kept.robust, run_one, n_restarts)
    return kept.update(adv, ~left)

  return jax.lax.fori_loop(0, n_target_classes, per_target, Kept(x, active))


def _check(eps, steps, n_restarts):
  if eps < 0:
    raise ValueError(f'eps must be >= 0, found {eps}')
  if steps < 1 or n_restarts < 1:
    raise ValueError(f'steps and n_restarts must be >= 1, found {steps}, {n_restarts}')


def _make_apgd(loss: str):
  def make(
    eps: float = 8 / 255,
    steps: int = 100,
    n_restarts: int = 1,
    rho: float = 0.75,
    targeted: bool = False,
    chunk: int | None = None,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
  ) -> Attack:
    _check(eps, steps, n_restarts)
    return targets.attack_every_point(
      apgd_masked,
      chunk=chunk,
      reach_target=targeted,
      loss=loss,
      eps=eps,
      steps=steps,
      n_restarts=n_restarts,
      rho=rho,
      targeted=targeted,
      clip_min=clip_min,
      clip_max=clip_max,
    )

  return make


make_apgd_ce = _make_apgd('ce')
make_apgd_ce.__doc__ = """APGD with cross-entropy loss, L∞ (Croce & Hein 2020).

  Args:
    eps: L∞ radius, in the attack's input space (8/255).
    steps: iterations per run (100, the paper's; torchattacks' default is 10).
    n_restarts: random restarts; each attacks only points not fooled yet (1).
    rho: checkpoint oscillation threshold (0.75).
    targeted: y holds target labels; the loss is −CE(target), success = reaching the target.
    chunk: samples attacked at once; only the samples the clean point does not already fool
      are attacked (`attacks.work_queue.run_on_active`). None takes `default_chunk(batch)`.
    clip_min, clip_max: the box (0, 1).

  Returns:
    `attack(apply_fn, params, x, y, key) -> x_adv`: x [B, H, W, C] float32, y int32 [B];
    x_adv [B, H, W, C] float32: a successful iterate, or x where none was found.
  """

make_apgd_dlr = _make_apgd('dlr')
make_apgd_dlr.__doc__ = """APGD with the DLR loss, L∞ (Croce & Hein 2020, eq. 6).

  Same arguments as `make_apgd_ce`. With `targeted=True` the loss is the targeted DLR
  −(z_p − z_t)/(z_π1 − (z_π3 + z_π4)/2) where p is the clean prediction (the contract gives
  only the target labels), success = reaching the target. DLR needs at least 4 classes.
  """


def make_apgd_t(
  eps: float = 8 / 255,
  steps: int = 100,
  n_restarts: int = 1,
  n_target_classes: int = 9,
  rho: float = 0.75,
  targeted: bool = False,
  chunk: int | None = None,
  clip_min: float = 0.0,
  clip_max: float = 1.0,
) -> Attack:
  """APGD-T: APGD on the targeted DLR loss, once per target class (Croce & Hein 2020, §4).

  The targets are the 2nd, 3rd, …, (n_target_classes+1)-th largest clean logits (the classes
  other than the true one when the clean point is right). Each target class runs on the points
  no earlier class has fooled; success is untargeted (prediction ≠ y), and the first success is
  kept. The loss is −(z_y − z_t)/(z_π1 − (z_π3 + z_π4)/2 + 1e-12) (needs K ≥ 4). torchattacks'
  `APGDT` (3.5.1) uses n_target_classes = n_classes − 1 and steps = 10 by default.

  Args:
    eps, steps, n_restarts, rho, chunk, clip_min, clip_max: as in `make_apgd_ce`.
    n_target_classes: how many target classes to try, ≤ K − 1 (9); unused when `targeted`.
    targeted: y are the targets: the targeted DLR loss towards each sample's own target
      (the clean prediction as the source class, `make_apgd_dlr(targeted=True)`), success =
      reaching it.

  Returns:
    `attack(apply_fn, params, x, y, key) -> x_adv`; y the true labels (or the targets).
  """
  _check(eps, steps, n_restarts)
  if n_target_classes < 1:
    raise ValueError(f'n_target_classes must be >= 1, found {n_target_classes}')
  if targeted:
    return make_apgd_dlr(eps=eps, steps=steps, n_restarts=n_restarts, rho=rho, targeted=True,
                         chunk=chunk, clip_min=clip_min, clip_max=clip_max)  # fmt: skip

  return targets.attack_every_point(
    apgd_t_masked,
    chunk=chunk,
    reach_target=False,
    eps=eps,
    steps=steps,
    n_restarts=n_restarts,
    n_target_classes=n_target_classes,
    rho=rho,
    clip_min=clip_min,
    clip_max=clip_max,
  )

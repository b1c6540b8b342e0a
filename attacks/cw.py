"""Carlini–Wagner L2 attack with a fixed c (no binary search), as torchattacks runs it.

Reference: Carlini & Wagner, "Towards Evaluating the Robustness of Neural
Networks", IEEE S&P 2017 (arXiv:1608.04644). Reference code: torchattacks
3.5.1 `CW(model, c=1, kappa=0, steps=50, lr=0.01)` (BEARD runs 100 steps).

Minimises `||x' - x||²₂ + c · f(x')` over `x' = lo + (hi - lo)·(tanh(w) + 1)/2`
with Adam (torch's defaults: betas 0.9/0.999, eps 1e-8) on w, starting from
`w = atanh(clamp(2(x - lo)/(hi - lo) - 1, -1, 1))`; untargeted
`f = max(z_y - max_{j≠y} z_j, -kappa)`, targeted `f = max(max_{j≠t} z_j - z_t, -kappa)`.
Each step keeps, per sample, the smallest-L2 iterate so far that is adversarial
(argmax ≠ y, or = t); a sample never adversarial keeps its input.

Where torchattacks departs from the paper:
- No binary search over c, no restarts; a fixed number of Adam steps.
- Early stop on the *batch*: every `max(steps // 10, 1)` steps (step 0
  included) it compares the summed cost of the whole batch with the last
  checked value and returns as soon as it rose (`early_stop=True` here; it
  couples the samples of a batch, so results depend on the batch).
- Its f() takes `other = max((1 - onehot)·z)` and `real = max(onehot·z)`, so
  both are at least 0: wrong when logits are negative. Default here is the
  correct margin; `torchattacks_margin=True` reproduces torchattacks.
- Pixels exactly at the box ends map to w = ±inf and can never move.
- The "best" iterate is recorded before the Adam update of the same step
  (the image whose logits were just computed).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from attacks.base import Attack, check_batch
from attacks.losses import margin, torchattacks_cw_margin

_BETA1, _BETA2, _ADAM_EPS = 0.9, 0.999, 1e-8


class _CWState(NamedTuple):
  """C&W's loop state.

  Attributes:
    step: int32 scalar, Adam steps taken.
    w: [B, H, W, C] float32, the tanh-space variable.
    m: [B, H, W, C] float32, Adam's first moment.
    v: [B, H, W, C] float32, Adam's second moment.
    best_adv: [B, H, W, C] float32, the smallest successful iterate (x where none).
    best_l2: float32 [B], the squared L2 of `best_adv` (1e10 where none).
    prev_cost: float32 scalar, the last checked batch cost.
    stopped: bool scalar, the early stop fired.
  """

  step: jax.Array
  w: jax.Array
  m: jax.Array
  v: jax.Array
  best_adv: jax.Array
  best_l2: jax.Array
  prev_cost: jax.Array
  stopped: jax.Array


def _adam(s: _CWState, g: jax.Array, lr: float) -> tuple[jax.Array, jax.Array, jax.Array]:
  """torch's Adam step on `s.w` with gradient g: `(w, m, v)` after it."""
  t = (s.step + 1).astype(jnp.float32)
  m = _BETA1 * s.m + (1 - _BETA1) * g
  v = _BETA2 * s.v + (1 - _BETA2) * g * g
  denom = jnp.sqrt(v) / jnp.sqrt(1 - _BETA2**t) + _ADAM_EPS
  return s.w - (lr / (1 - _BETA1**t)) * m / denom, m, v


def _initial_state(x: jax.Array, w0: jax.Array) -> _CWState:
  """The state before the first step: w = w0, no success yet."""
  return _CWState(
    step=jnp.zeros((), jnp.int32),
    w=w0,
    m=jnp.zeros_like(w0),
    v=jnp.zeros_like(w0),
    best_adv=x,
    best_l2=jnp.full((x.shape[0],), 1e10, jnp.float32),
    prev_cost=jnp.asarray(1e10, jnp.float32),
    stopped=jnp.zeros((), jnp.bool_),
  )


def _to_box(w: jax.Array, clip_min: float, clip_max: float) -> jax.Array:
  """tanh space → the box: `lo + (hi - lo)·(tanh(w) + 1)/2`."""
  return (clip_max - clip_min) * (0.5 * (jnp.tanh(w) + 1)) + clip_min


def _from_box(x: jax.Array, clip_min: float, clip_max: float) -> jax.Array:
  """The box → tanh space: `atanh(clamp(2(x - lo)/(hi - lo) - 1, -1, 1))` (±inf at the ends)."""
  u = jnp.clip((x - clip_min) / (clip_max - clip_min) * 2 - 1, -1, 1)
  return 0.5 * jnp.log((1 + u) / (1 - u))


def _early_stop(s: _CWState, cost: jax.Array, check_every: int) -> tuple[jax.Array, jax.Array]:
  """torchattacks' batch early stop: `(stopped, prev_cost)` after a step of batch cost `cost`."""
  check = s.step % check_every == 0
  stopped = check & (cost > s.prev_cost)
  return stopped, jnp.where(check & ~stopped, cost, s.prev_cost)


def _success(logits: jax.Array, y: jax.Array, targeted: bool) -> jax.Array:
  """bool [B]: argmax of logits [B, K] is the target y (targeted), or is not the label y."""
  pred = jnp.argmax(logits, axis=1)
  return pred == y if targeted else pred != y


def make_cw(
  c: float = 1.0,
  kappa: float = 0.0,
  steps: int = 50,
  lr: float = 0.01,
  targeted: bool = False,
  torchattacks_margin: bool = False,
  early_stop: bool = True,
  clip_min: float = 0.0,
  clip_max: float = 1.0,
) -> Attack:
  """Builds C&W-L2 (torchattacks `CW`).

  Args:
    c: weight of the margin term (BEARD: 1).
    kappa: confidence; f is clamped below at -kappa (BEARD: 0).
    steps: Adam steps (torchattacks' default 50; BEARD: 100).
    lr: Adam learning rate (0.01).
    targeted: y are targets; success means argmax = y.
    torchattacks_margin: use torchattacks 3.5.1's f() (wrong for negative logits).
    early_stop: torchattacks' batch-level early stop (see the module docstring).
    clip_min: lower end of the tanh box.
    clip_max: upper end of the tanh box.

  Returns:
    `attack(apply_fn, params, x, y, key) -> x_adv`: x [B, H, W, C] float32,
    y [B] int32, key unused; x_adv [B, H, W, C] float32: the smallest
    successful iterate per sample (inside the box), or x where none succeeded.
  """
  margin_fn = torchattacks_cw_margin if torchattacks_margin else margin
  check_every = max(steps // 10, 1)

  def make_cost_fn(apply_fn, params, x, y):
    """`cost(w) -> (batch cost, (x_adv, l2 [B], logits [B, K]))`."""

    def cost_fn(w):
      x_adv = _to_box(w, clip_min, clip_max)
      l2 = jnp.sum(jnp.square(x_adv - x).reshape(x.shape[0], -1), axis=1)
      logits = apply_fn(params, x_adv)
      # margin() = max_{j≠y} z_j - z_y: untargeted f is its negative, targeted f is it.
      gap = margin_fn(logits, y)
      f = jnp.maximum(gap if targeted else -gap, -kappa)
      return jnp.sum(l2) + c * jnp.sum(f), (x_adv, l2, logits)

    return cost_fn

  def attack(apply_fn, params, x, y, key) -> jax.Array:
    del key  # deterministic
    x = jnp.asarray(x, jnp.float32)
    y = jnp.asarray(y)
    check_batch(x, y)
    value_and_grad = jax.value_and_grad(make_cost_fn(apply_fn, params, x, y), has_aux=True)

    def body(s: _CWState) -> _CWState:
      (cost, (x_adv, l2, logits)), g = value_and_grad(s.w)
      w, m, v = _adam(s, g, lr)
      better = _success(logits, y, targeted) & (s.best_l2 > l2)
      stopped, prev_cost = s.stopped, s.prev_cost
      if early_stop:
        stopped, prev_cost = _early_stop(s, cost, check_every)
      return _CWState(
        step=s.step + 1,
        w=w,
        m=m,
        v=v,
        best_adv=jnp.where(better[:, None, None, None], x_adv, s.best_adv),
        best_l2=jnp.where(better, l2, s.best_l2),
        prev_cost=prev_cost,
        stopped=stopped,
      )

    init = _initial_state(x, _from_box(x, clip_min, clip_max))
    final = jax.lax.while_loop(lambda s: (s.step < steps) & ~s.stopped, body, init)
    return final.best_adv

  return attack

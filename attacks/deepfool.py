"""DeepFool (L2), batched, with torchattacks 3.5.1's semantics.

Reference: Moosavi-Dezfooli, Fawzi & Frossard, "DeepFool: a simple and accurate
method to fool deep neural networks", CVPR 2016 (arXiv:1511.04599). Reference
code: torchattacks 3.5.1 `DeepFool(model, steps=50, overshoot=0.02)`
(untargeted only there).

Each step, for every sample still classified as its label y: take the gradients
w_k of all class logits f_k, pick `l = argmin_{k≠y} |f_k - f_y| / ||w_k - w_y||`
and move `x ← clamp(x + (1 + overshoot) · |f_l - f_y| · (w_l - w_y) / ||w_l - w_y||²)`.
A sample stops as soon as its prediction differs from y (checked *before* the
step, so a sample already misclassified is returned unchanged, and the image
after the last step is returned unchecked).

Where torchattacks departs from the paper:
- The paper sums the raw steps r_i and applies `(1 + overshoot)` once to the
  total, `x + (1 + overshoot) Σ r_i`, with no box; torchattacks scales *each*
  step by `(1 + overshoot)` and clamps to [0, 1] after each, so the
  accumulated perturbation is `Σ (1 + overshoot) r_i` with clamps between.
- The paper uses the clean prediction as the source class and the top
  `num_classes` (10) classes of the clean logits as candidates; torchattacks
  uses the true label and every class. `candidates=k` restricts to the top-k
  clean classes (original DeepFool); for every attacked sample the label is
  the clean top-1, so the two agree.
- No 1e-4 added to the step (the original code's `abs(f) + 1e-4`).

Targeted form (not in torchattacks): with y the target, each step crosses the
linearised boundary between the current prediction p and t,
`x ← clamp(x + (1 + overshoot) · |f_p - f_t| · (w_t - w_p) / ||w_t - w_p||²)`,
until argmax = t.

All class gradients of the samples in flight come from one forward pass and a
vmapped VJP per class (memory: K·S·H·W·C floats for S samples in flight).

Cost. Most samples cross the boundary in a few steps, a few take all 50: a
batch stepped in lock-step until its last sample finishes costs (batch × the
slowest sample's steps). With `slots=S` the batch is a work queue instead
(`attacks.work_queue`, as in Square): S samples are in flight, and the moment
one finishes (fooled, or out of steps) its slot loads the next sample of the
batch, so the cost follows the sum of the samples' own step counts. Each
sample's trajectory is the same either way up to float rounding, which does
depend on how many samples share a convolution:
under the `beard` protocol DeepFool leaves its unfooled samples on the decision
boundary, and rounding decides those ties (`runner.BOUNDARY_GAP`), so records
name the slots that ran.
On a CPU few slots are fastest: a step's K input gradients of S samples are
K·S images' activations, which stay in cache only for small S. A GPU wants more
samples in flight, but not the whole batch. So the default is 1 slot on a CPU and
`ACCELERATOR_SLOTS` (64) on a GPU or TPU, the fastest measured on the 2-core CPU and
on an H200 (`bench/RESULTS.md`, "Scheduling defaults"; TPU not measured).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from attacks import work_queue
from attacks.base import Attack, check_batch
from attacks.projections import clip_box
from attacks.work_queue import WorkQueue

CPU_SLOTS = 1
ACCELERATOR_SLOTS = 64


def default_slots() -> int:
  """Samples in flight when `slots` is None: 1 on a CPU, `ACCELERATOR_SLOTS` on a GPU/TPU."""
  return CPU_SLOTS if jax.default_backend() == 'cpu' else ACCELERATOR_SLOTS


class _State(NamedTuple):
  """DeepFool's loop state.

  Attributes:
    queue: which sample each of the S slots steps, and its step count.
    x_slot: [S, H, W, C] float32, the current image of each slot's sample.
    x_adv: [B, H, W, C] float32, each finished sample's last image (x until it finishes).
  """

  queue: WorkQueue
  x_slot: jax.Array
  x_adv: jax.Array


def _flat(x):
  return x.reshape(x.shape[0], -1)


def _untargeted_delta(logits, vjp_fn, y, cls):
  """The step to the nearest linearised boundary among the candidates, flat [S, D].

  Args:
    logits: [S, K] at the current images.
    vjp_fn: their VJP, cotangent [S, K] → (gradient [S, H, W, C],).
    y: int32 [S] labels.
    cls: int32 [S, M] candidate classes (y among them).
  """
  num_classes = logits.shape[-1]
  # Gradients of the candidate logits: [M, S, D] → [S, M, D].
  cotangents = jnp.moveaxis(jax.nn.one_hot(cls, num_classes, dtype=logits.dtype), 1, 0)
  grads = jax.vmap(lambda ct: _flat(vjp_fn(ct)[0]))(cotangents)
  grads = jnp.swapaxes(grads, 0, 1)
  is_label = cls == y[:, None]  # [S, M]
  label_pos = jnp.argmax(is_label, axis=1)
  w_label = jnp.take_along_axis(grads, label_pos[:, None, None], axis=1)  # [S, 1, D]
  f_cls = jnp.take_along_axis(logits, cls, axis=1)
  f_label = jnp.take_along_axis(logits, y[:, None], axis=1)
  f_prime = f_cls - f_label
  w_prime = grads - w_label
  w_norm = jnp.sqrt(jnp.sum(jnp.square(w_prime), axis=2))
  distance = jnp.where(is_label, jnp.inf, jnp.abs(f_prime) / w_norm)
  best = jnp.argmin(distance, axis=1)
  f_best = jnp.take_along_axis(f_prime, best[:, None], axis=1)  # [S, 1]
  w_best = jnp.take_along_axis(w_prime, best[:, None, None], axis=1)[:, 0]  # [S, D]
  n_best = jnp.take_along_axis(w_norm, best[:, None], axis=1)
  return jnp.abs(f_best) * w_best / jnp.square(n_best)


def _targeted_delta(logits, vjp_fn, y, pred):
  """The step across the linearised boundary between `pred` [S] and the target `y` [S], [S, D]."""
  num_classes = logits.shape[-1]
  w_target = _flat(vjp_fn(jax.nn.one_hot(y, num_classes, dtype=logits.dtype))[0])
  w_pred = _flat(vjp_fn(jax.nn.one_hot(pred, num_classes, dtype=logits.dtype))[0])
  w_diff = w_target - w_pred
  f_diff = jnp.take_along_axis(logits, y[:, None], 1) - jnp.take_along_axis(
    logits, pred[:, None], 1
  )
  return jnp.abs(f_diff) * w_diff / jnp.sum(jnp.square(w_diff), axis=1, keepdims=True)


def _candidate_classes(apply_fn, params, x, candidates: int | None) -> jax.Array:
  """int32 [B, M]: every class (M = K), or the top-`candidates` classes of the clean logits."""
  if candidates is None:
    num_classes = jax.eval_shape(apply_fn, params, x).shape[-1]
    return jnp.broadcast_to(jnp.arange(num_classes, dtype=jnp.int32), (x.shape[0], num_classes))
  return jax.lax.top_k(apply_fn(params, x), candidates)[1].astype(jnp.int32)


def _deepfool_loop(
  apply_fn: Callable, params, x, y, cls, *, slots: int, steps: int, overshoot: float,
  targeted: bool, clip_min: float, clip_max: float,
) -> jax.Array:  # fmt: skip
  """Steps every sample through the work queue of `slots` slots (the module docstring).

  Args:
    apply_fn, params: the model, `apply_fn(params, x) -> logits [B, K]`.
    x: [B, H, W, C] float32 clean images; y [B] int32 labels (targets when `targeted`).
    cls: int32 [B, M] candidate classes (untargeted), or None (targeted).
    slots, steps, overshoot, targeted, clip_min, clip_max: as in `make_deepfool`.

  Returns:
    x_adv [B, H, W, C] float32.
  """
  batch = x.shape[0]

  def body(state: _State) -> _State:
    live, index = work_queue.held(state.queue)
    x_slot, y_slot = state.x_slot, y[index]
    logits, vjp_fn = jax.vjp(lambda z: apply_fn(params, z), x_slot)
    pred = jnp.argmax(logits, axis=1).astype(jnp.int32)
    unfinished = (pred != y_slot) if targeted else (pred == y_slot)
    active = live & unfinished & (state.queue.steps < steps)
    if targeted:
      delta = _targeted_delta(logits, vjp_fn, y_slot, pred)
    else:
      delta = _untargeted_delta(logits, vjp_fn, y_slot, cls[index])
    stepped = clip_box(x_slot + (1 + overshoot) * delta.reshape(x_slot.shape), clip_min, clip_max)
    x_slot = jnp.where(active[:, None, None, None], stepped, x_slot)
    # A finished slot hands its image to x_adv and loads the next sample of the batch.
    done = live & ~active
    x_adv = state.x_adv.at[jnp.where(done, index, batch)].set(x_slot, mode='drop')
    queue = work_queue.refill(state.queue, done)
    x_slot = jnp.where(done[:, None, None, None], x[work_queue.held(queue)[1]], x_slot)
    return _State(queue, x_slot, x_adv)

  queue = work_queue.start(slots, jnp.arange(batch))
  init = _State(queue, x[work_queue.held(queue)[1]], x)
  return jax.lax.while_loop(lambda state: work_queue.busy(state.queue), body, init).x_adv


def make_deepfool(
  steps: int = 50,
  overshoot: float = 0.02,
  candidates: int | None = None,
  targeted: bool = False,
  clip_min: float = 0.0,
  clip_max: float = 1.0,
  slots: int | None = None,
) -> Attack:
  """Builds DeepFool (torchattacks `DeepFool` untargeted; a targeted variant of ours).

  Args:
    steps: most steps per sample (BEARD: 50).
    overshoot: each step is scaled by 1 + overshoot (BEARD: 0.02).
    candidates: None for all classes (torchattacks); k for the top-k classes
      of the clean logits (the paper's default is 10). Untargeted only.
    targeted: y are targets; step towards the target class until it wins.
    clip_min: lower end of the box clamped to after every step.
    clip_max: upper end of the box.
    slots: samples in flight (see the module docstring); None takes `default_slots()`,
      the batch size or more steps the whole batch in lock-step. The result does not
      depend on it (up to float rounding of the batch size).

  Returns:
    `attack(apply_fn, params, x, y, key) -> x_adv`: x [B, H, W, C] float32,
    y [B] int32, key unused; x_adv [B, H, W, C] float32 inside the box (x
    unchanged where it was already misclassified, or already the target).

  Raises:
    ValueError: `candidates` < 2, `candidates` with `targeted`, or `slots` < 1.
  """
  if slots is not None and slots < 1:
    raise ValueError(f'slots must be None or >= 1, got {slots}')
  if candidates is not None and candidates < 2:
    raise ValueError(f'candidates must be None or >= 2 (label plus a rival), got {candidates}')
  if candidates is not None and targeted:
    raise ValueError(
      'DeepFool candidates apply to the untargeted form only; targeted=True '
      'steps towards the given target'
    )

  def attack(apply_fn, params, x, y, key) -> jax.Array:
    del key  # deterministic
    x = jnp.asarray(x, jnp.float32)
    y = jnp.asarray(y, jnp.int32)
    check_batch(x, y)
    cls = None if targeted else _candidate_classes(apply_fn, params, x, candidates)
    in_flight = min(default_slots() if slots is None else slots, x.shape[0])
    return _deepfool_loop(
      apply_fn, params, x, y, cls, slots=in_flight, steps=steps, overshoot=overshoot,
      targeted=targeted, clip_min=clip_min, clip_max=clip_max,
    )  # fmt: skip

  return attack

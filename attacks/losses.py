"""Per-sample attack losses on logits, and their registry.

Convention: every loss maps `(logits [B, K], labels [B]) -> [B]` and an
*untargeted* attack *maximises* it on the true labels; a *targeted* attack
maximises `-loss(logits, target)` (it minimises the loss towards the target),
except where a dedicated targeted form exists (`dlr_targeted`).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

LossFn = Callable[[jax.Array, jax.Array], jax.Array]


def _true_logit(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return jnp.take_along_axis(logits, labels[:, None].astype(jnp.int32), axis=1)[:, 0]


def _best_other_logit(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """max_{j ≠ label} logits_j, correct for negative logits (the label slot is -inf)."""
  mask = jax.nn.one_hot(labels, logits.shape[-1], dtype=jnp.bool_)
  return jnp.max(jnp.where(mask, -jnp.inf, logits), axis=1)


def cross_entropy(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
  """Softmax cross-entropy per sample, `-log softmax(logits)[label]`.

  Args:
    logits: [B, K] float.
    labels: [B] int in [0, K).

  Returns:
    [B] float ≥ 0.
  """
  logits = jnp.asarray(logits)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  return -_true_logit(log_probs, jnp.asarray(labels))


def margin(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
  """C&W margin `max_{j≠y} z_j - z_y` per sample (> 0 iff misclassified).

  Args:
    logits: [B, K] float.
    labels: [B] int in [0, K).

  Returns:
    [B] float.
  """
  logits, labels = jnp.asarray(logits), jnp.asarray(labels)
  return _best_other_logit(logits, labels) - _true_logit(logits, labels)


def torchattacks_cw_margin(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
  """torchattacks 3.5.1 CW.f()'s margin, `other - real`, bug included.

  torchattacks takes `other = max((1 - onehot) * z)` and `real = max(onehot * z)`:
  the zeroed slots enter both maxima, so `other` is at least 0 (wrong when all
  other logits are negative) and `real` is at least 0 (wrong when z_y < 0).

  Args:
    logits: [B, K] float.
    labels: [B] int in [0, K).

  Returns:
    [B] float, `other - real` as torchattacks computes them.
  """
  logits, labels = jnp.asarray(logits), jnp.asarray(labels)
  onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
  other = jnp.max((1 - onehot) * logits, axis=1)
  real = jnp.max(onehot * logits, axis=1)
  return other - real


def dlr(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
  """Difference of Logits Ratio (Croce & Hein 2020, APGD), untargeted.

  `-(z_y - max_{j≠y} z_j) / (z_π1 - z_π3 + 1e-12)` with z sorted decreasingly.
  Needs K ≥ 3.

  Args:
    logits: [B, K] float.
    labels: [B] int in [0, K).

  Returns:
    [B] float.
  """
  logits, labels = jnp.asarray(logits), jnp.asarray(labels)
  top = jnp.sort(logits, axis=1)[:, ::-1]
  numerator = _true_logit(logits, labels) - _best_other_logit(logits, labels)
  return -numerator / (top[:, 0] - top[:, 2] + 1e-12)


def dlr_targeted(logits: ArrayLike, labels: ArrayLike, targets: ArrayLike) -> jax.Array:
  """Targeted DLR (Croce & Hein 2020): `-(z_y - z_t) / (z_π1 - (z_π3 + z_π4)/2 + 1e-12)`.

  Maximised by a targeted attack. Needs K ≥ 4.

  Args:
    logits: [B, K] float.
    labels: [B] int, the true labels.
    targets: [B] int, the target labels.

  Returns:
    [B] float.
  """
  logits = jnp.asarray(logits)
  top = jnp.sort(logits, axis=1)[:, ::-1]
  numerator = _true_logit(logits, jnp.asarray(labels)) - _true_logit(logits, jnp.asarray(targets))
  return -numerator / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


LOSSES: dict[str, LossFn] = {
  'ce': cross_entropy,
  'margin': margin,
  'dlr': dlr,
}


def get_loss(name: str) -> LossFn:
  """The per-sample loss `name` (see `LOSSES`); raises ValueError naming the choices."""
  if name not in LOSSES:
    raise ValueError(f'unknown loss {name!r}; choose from {sorted(LOSSES)}')
  return LOSSES[name]


def attack_objective_grad(
  apply_fn: Callable, params, x: jax.Array, y: jax.Array, loss_fn: LossFn, targeted: bool
) -> tuple[jax.Array, jax.Array]:
  """Gradient of the batch-mean attack objective with respect to the input.

  The objective is `mean(loss_fn(logits, y))` (untargeted) or its negative
  (targeted), exactly as torchattacks' `CrossEntropyLoss()` (mean reduction)
  and `cost = -loss(...)`; the 1/B factor matters only where a step divides by
  the gradient's norm plus a constant (PGD-L2).

  Args:
    apply_fn: `apply_fn(params, x) -> logits [B, K]`.
    params: the model's parameter pytree.
    x: [B, H, W, C] float32, the point to differentiate at.
    y: [B] int, true labels (untargeted) or targets (targeted).
    loss_fn: a per-sample loss from `LOSSES`.
    targeted: minimise the loss towards y instead of maximising it.

  Returns:
    (gradient [B, H, W, C] float32, logits [B, K] at x).
  """
  sign = -1.0 if targeted else 1.0

  def objective(inputs):
    logits = apply_fn(params, inputs)
    return sign * jnp.mean(loss_fn(logits, y)), logits

  grad, logits = jax.grad(objective, has_aux=True)(x)
  return grad, logits

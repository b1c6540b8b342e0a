"""Target-label rules for targeted attacks.

BEARD's code uses `next_class` with K = 10 for every dataset (PROTOCOL.md §5);
the `standard` protocol uses the dataset's own K.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from attacks import work_queue
from attacks.base import check_batch, is_success

# target_fn(key, labels [B] int, logits [B, K]) -> targets [B] int32
TargetFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def next_class(y: ArrayLike, num_classes: int) -> jax.Array:
  """`(y + 1) mod num_classes`.

  Args:
    y: [B] int labels.
    num_classes: K (BEARD passes 10 even for 100 or 200 classes).

  Returns:
    [B] int32 targets.
  """
  return (jnp.asarray(y, jnp.int32) + 1) % num_classes


def random_other(key: jax.Array, y: ArrayLike, num_classes: int) -> jax.Array:
  """A uniformly random class other than y, per sample.

  Args:
    key: a `jax.random` key.
    y: [B] int labels in [0, num_classes).
    num_classes: K ≥ 2.

  Returns:
    [B] int32 targets, never equal to y.
  """
  y = jnp.asarray(y, jnp.int32)
  shift = jax.random.randint(key, y.shape, 1, num_classes, jnp.int32)
  return (y + shift) % num_classes


def least_likely(logits: ArrayLike) -> jax.Array:
  """The class of lowest logit per sample: [B, K] → [B] int32."""
  return jnp.argmin(jnp.asarray(logits), axis=-1).astype(jnp.int32)


def _next_class_rule(num_classes: int | None) -> TargetFn:
  return lambda key, y, logits: next_class(y, num_classes or logits.shape[-1])


def _random_other_rule(num_classes: int | None) -> TargetFn:
  return lambda key, y, logits: random_other(key, y, num_classes or logits.shape[-1])


def _least_likely_rule(num_classes: int | None) -> TargetFn:
  del num_classes  # the logits fix K
  return lambda key, y, logits: least_likely(logits)


# rule name -> (num_classes | None) -> target_fn
TARGET_RULES: dict[str, Callable[[int | None], TargetFn]] = {
  'next_class': _next_class_rule,
  'random_other': _random_other_rule,
  'least_likely': _least_likely_rule,
}


def get_target_fn(rule: str, num_classes: int | None = None) -> TargetFn:
  """A rule as one signature: `target_fn(key, y, logits) -> targets`.

  Args:
    rule: a key of `TARGET_RULES`.
    num_classes: K for `next_class`/`random_other`; None takes `logits.shape[-1]`.

  Returns:
    `target_fn(key, y [B] int, logits [B, K] float) -> [B] int32`; each rule
    uses only what it needs.

  Raises:
    ValueError: an unknown rule.
  """
  if rule not in TARGET_RULES:
    raise ValueError(f'unknown target rule {rule!r}; choose from {sorted(TARGET_RULES)}')
  return TARGET_RULES[rule](num_classes)


def check_target_count(apply_fn, params, x: jax.Array, n_target_classes: int) -> None:
  """Raises a clear error when `n_target_classes` exceeds K − 1 for the model's K logits."""
  num_classes = jax.eval_shape(apply_fn, params, x).shape[-1]
  if n_target_classes > num_classes - 1:
    raise ValueError(f'n_target_classes={n_target_classes} > K - 1 = {num_classes - 1}')


def attack_every_point(
  masked_attack: Callable[..., tuple[jax.Array, jax.Array]],
  *,
  chunk: int | None,
  reach_target: bool,
  **hparams,
):
  """Turns a masked attack (APGD, APGD-T, FAB-T) into `attack(apply_fn, params, x, y, key)`.

  AutoAttack runs each stage on the points still robust (`active`); a stand-alone attack runs it
  on every point its clean prediction does not already count as a success, `chunk` at a time
  (`attacks.work_queue.run_on_active`). This wrapper casts and checks the inputs, checks
  `n_target_classes ≤ K − 1` (when the attack ranks targets) once the logits' K is known, and
  calls `masked_attack(apply_fn, params, x, y, keys, active, **hparams)` on each chunk.

  Args:
    masked_attack: a `work_queue.Stage`, returning `(x_adv [C, ...], still_robust [C] bool)`.
    chunk: samples per chunk; None takes `work_queue.default_chunk(B)`.
    reach_target: y are targets and success is reaching them (else: leaving y).
    **hparams: keyword arguments of `masked_attack`.

  Returns:
    `attack(apply_fn, params, x [B, H, W, C], y [B] int, key) -> x_adv [B, H, W, C]`.
  """
  work_queue.check_chunk(chunk)
  stage = functools.partial(masked_attack, **hparams)

  def attack(apply_fn, params, x, y, key) -> jax.Array:
    x = jnp.asarray(x, jnp.float32)
    y = jnp.asarray(y, jnp.int32)
    check_batch(x, y)
    if 'n_target_classes' in hparams:
      check_target_count(apply_fn, params, x, hparams['n_target_classes'])
    active = ~is_success(apply_fn(params, x), y, reach_target)
    x_adv, _ = work_queue.run_on_active(stage, chunk, apply_fn, params, x, y, key, active)
    return x_adv

  return attack

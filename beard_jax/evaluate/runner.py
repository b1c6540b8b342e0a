"""Applies an attack to a dataset in batches and times every batch.

One jitted program per (attack, batch shape) computes, for a batch, the adversarial
example, its prediction and the perturbation norms. The clean predictions come in as
an input, computed once per model by a forward-only program (`predict_clean`) and
shared by all of its attacks, so an attack's time is what BEARD times, the attack and
the final forward pass (PROTOCOL.md §5), with no clean pass per attack. Programs are
compiled ahead of time (compile time reported on its own). A last batch smaller than
the others is padded to their shape, unless the padding would waste more than
`PADDING_WASTE_LIMIT` of the pass's rows: then it runs as its own, smaller program
(`batch_shapes`, a rule of the shapes alone, so a run always splits the same way).

The program takes one traced scalar, `value`, that `compile_attack`'s
`make_attack(value)` may use as a hyperparameter: the points of a sweep
(`run_compiled` once per value) then share one compilation. `run_attack` is the
single-attack case. `compile_transfer` + `run_transfer` craft on a source model and
score the same adversarials on T target models (stacked parameters, vmapped) in one
program. Each batch is timed from the host→device copy to `block_until_ready` of its
results. Ratios are computed on the host from the per-sample records.

Samples on a decision boundary. An attack can leave an image whose top two
logits are equal up to float rounding (DeepFool in the `beard` protocol leaves
327 of the first 1,000 CIFAR-10 test images there on BACON's checkpoint: its
clamped steps approach the boundary without crossing it). Whether such an
image counts as robust is decided by the rounding of the framework and the
batch shape, not by the model. Each run therefore records the top-2 gap of
every adversarial prediction, and `robust_accuracy_range` gives the accuracies
that rounding alone could produce.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from beard_jax import sharding

BOUNDARY_GAP = 1e-4
"""Top-2 logit gap at or below which a prediction is on the boundary (logit units).

The ConvNets' logits are O(10), where float32 rounding is about 1e-6; measured on
BACON's checkpoint (`beard` protocol, 1,000 images), DeepFool's gaps fall either
below 1e-5 or above 1e-3, and torchattacks' images differ from ours by at most
1e-4 per pixel on 994 of them.
"""

PADDING_WASTE_LIMIT = 0.1
"""Largest fraction of a pass's rows that padding the last batch may waste before the
last batch gets a program of its own shape (one more compilation)."""

BatchCallback = Callable[[int, int, float], None]
"""`on_batch(batch_index, num_batches, batch_seconds)`, called after every batch."""


class AttackRun(NamedTuple):
  """Per-sample outcomes of one attack pass (N examples) and its timing.

  Attributes:
    clean_correct: bool [N], the model is right on the clean input.
    adv_correct: bool [N], the model is right on the adversarial input.
    adv_pred: int32 [N], the prediction on the adversarial input.
    adv_gap: float32 [N], top-1 minus top-2 logit on the adversarial input.
    label_in_top2: bool [N], the true class is one of the two highest there.
    success: bool [N], right before and wrong after (untargeted) or right
      before and predicting the target after (targeted).
    linf: float32 [N], ‖x_adv − x‖∞ in the attack's input space.
    l2: float32 [N], ‖x_adv − x‖₂ in the attack's input space.
    batch_seconds: float64 [num_batches], wall time of each batch.
    compile_seconds: ahead-of-time compilation time of the batch program.
    targeted: whether `success` means hitting the target.
  """

  clean_correct: np.ndarray
  adv_correct: np.ndarray
  adv_pred: np.ndarray
  adv_gap: np.ndarray
  label_in_top2: np.ndarray
  success: np.ndarray
  linf: np.ndarray
  l2: np.ndarray
  batch_seconds: np.ndarray
  compile_seconds: float
  targeted: bool

  @property
  def num_examples(self) -> int:
    return int(self.clean_correct.shape[0])

  @property
  def clean_accuracy(self) -> float:
    """Percent of all examples classified correctly without attack."""
    return 100.0 * float(self.clean_correct.mean())

  @property
  def robust_accuracy(self) -> float:
    """Percent of all examples still classified correctly after the attack (BEARD's accuracy)."""
    return 100.0 * float(self.adv_correct.mean())

  @property
  def on_boundary(self) -> np.ndarray:
    """bool [N]: the adversarial prediction is a float-rounding tie (gap <= BOUNDARY_GAP)."""
    return self.adv_gap <= BOUNDARY_GAP

  @property
  def robust_accuracy_range(self) -> tuple[float, float]:
    """(lowest, highest) robust accuracy in percent that boundary ties could give.

    Lowest: every boundary sample counted wrong. Highest: every boundary sample
    whose top two classes include its label counted right.
    """
    decided_right = self.adv_correct & ~self.on_boundary
    label_in_tie = self.on_boundary & self.label_in_top2
    return 100.0 * float(decided_right.mean()), 100.0 * float((decided_right | label_in_tie).mean())

  @property
  def attack_success_rate(self) -> float:
    """The paper's per-sample ASR: percent of all examples with `success`."""
    return 100.0 * float(self.success.mean())

  @property
  def total_seconds(self) -> float:
    """Whole-pass wall time (BEARD's "attack time"), compilation excluded."""
    return float(self.batch_seconds.sum())

  @property
  def seconds_per_success(self) -> float | None:
    """The paper's AST: pass time per successful adversarial example; None if none succeeded."""
    successes = int(self.success.sum())
    return self.total_seconds / successes if successes else None


def batch_shapes(num_examples: int, batch_size: int, multiple: int = 1) -> tuple[int, ...]:
  """The batch shapes a pass over `num_examples` runs: `(batch_size,)`, or
  `(batch_size, remainder)` when padding the last batch to `batch_size` would waste
  more than `PADDING_WASTE_LIMIT` of the pass's rows.

  Args:
    num_examples: N, examples in the pass (≥ 1).
    batch_size: B, rows of the full batches.
    multiple: the remainder shape is rounded up to a multiple of this (the mesh size).

  Examples: N 256 at B 250 → (250, 6) (a padded batch would waste 244 of 500 rows);
  N 10,000 at B 256 → (256,) (240 of 10,240 rows, 2.3 %).
  """
  num_batches = -(-num_examples // batch_size)
  remainder = num_examples - (num_batches - 1) * batch_size
  wasted = (batch_size - remainder) / (num_batches * batch_size)
  shape = -(-remainder // multiple) * multiple
  if shape >= batch_size or wasted <= PADDING_WASTE_LIMIT:
    return (batch_size,)
  return (batch_size, shape)


def _score(apply_fn, params, x, x_adv, y_true, y_attack, targeted: bool, clean_pred):
  """One model's outcomes on a batch: the `AttackRun` columns, each [B]; `clean_pred`
  [B] is the model's clean prediction."""
  adv_top2, adv_top2_classes = jax.lax.top_k(apply_fn(params, x_adv), 2)
  adv_pred = adv_top2_classes[:, 0]
  delta = (x_adv - x).reshape(x.shape[0], -1)
  clean_correct = clean_pred == y_true
  adv_correct = adv_pred == y_true
  if targeted:
    success = clean_correct & (adv_pred == y_attack)
  else:
    success = clean_correct & ~adv_correct
  return (
    clean_correct,
    adv_correct,
    adv_pred.astype(jnp.int32),
    adv_top2[:, 0] - adv_top2[:, 1],
    jnp.any(adv_top2_classes == y_true[:, None], axis=-1),
    success,
    jnp.max(jnp.abs(delta), axis=-1),
    jnp.sqrt(jnp.sum(delta * delta, axis=-1)),
  )


def _batch_program(make_attack, apply_fn, targeted: bool):
  """The per-batch computation: the adversarial examples, their predictions, norms;
  `clean_pred` [B] is the model's clean prediction of the batch (`predict_clean`)."""

  def program(params, x, y_true, y_attack, key_data, value, clean_pred):
    key = jax.random.wrap_key_data(key_data)
    x_adv = make_attack(value)(apply_fn, params, x, y_attack, key)
    return _score(apply_fn, params, x, x_adv, y_true, y_attack, targeted, clean_pred)

  return program


def _transfer_program(make_attack, apply_fn, targeted: bool, target_axis: str):
  """Crafts on the source, scores every target: each column [B, T] (batch axis first).

  `target_axis`: `vmap` scores the targets as one batched program; `map` one after the
  other (`lax.map`): on a CPU, vmapping over parameters makes grouped convolutions,
  which XLA:CPU runs slowly (as for training seeds, `bench/RESULTS.md`).
  """

  def program(models, x, y_true, y_attack, key_data, value, clean_pred):
    source, targets = models
    key = jax.random.wrap_key_data(key_data)
    x_adv = make_attack(value)(apply_fn, source, x, y_attack, key)

    def score(target_and_clean):
      params, clean = target_and_clean
      return _score(apply_fn, params, x, x_adv, y_true, y_attack, targeted, clean)

    per_target = (targets, clean_pred.T)  # clean_pred [B, T]: the targets' clean predictions.
    if target_axis == 'vmap':
      return jax.vmap(score, out_axes=1)(per_target)
    return tuple(jnp.moveaxis(column, 0, 1) for column in jax.lax.map(score, per_target))

  return program


def _predict_program(apply_fn, target_axis: str | None):
  """The clean predictions of a batch: `predict(params, x) -> [B]` for one model
  (`target_axis` None), `predict(targets, x) -> [B, T]` for T stacked targets."""

  def predict(targets, x):
    def one(params):
      return jnp.argmax(apply_fn(params, x), axis=-1).astype(jnp.int32)

    if target_axis is None:
      return one(targets)
    if target_axis == 'vmap':
      return jax.vmap(one, out_axes=1)(targets)
    return jnp.moveaxis(jax.lax.map(one, targets), 0, 1)

  return predict


def default_target_axis() -> str:
  """`map` on a CPU, `vmap` on GPUs and TPUs (see `_transfer_program`)."""
  return 'map' if jax.default_backend() == 'cpu' else 'vmap'


def _pad_to(array: np.ndarray, size: int) -> np.ndarray:
  """Pads axis 0 to `size` by repeating the first row (padded rows are discarded)."""
  missing = size - array.shape[0]
  if missing <= 0:
    return array
  filler = np.repeat(array[:1], missing, axis=0)
  return np.concatenate([array, filler], axis=0)


def _global_batch(batch: np.ndarray, batch_sharding) -> jax.Array:
  """The global batch array, each process contributing its own contiguous slice.

  Every process holds the whole (small) host batch, but only its slice is copied
  to its devices; on one process this is a plain sharded `device_put`.
  """
  per_process = batch.shape[0] // jax.process_count()
  start = jax.process_index() * per_process
  local = batch[start : start + per_process]
  return jax.make_array_from_process_local_data(batch_sharding, local, batch.shape)


def _checked_inputs(
  images: np.ndarray, labels: np.ndarray, targets: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """`(images float32 [N, H, W, C], labels int32 [N], attack labels int32 [N])`.

  The attack labels are the targets, or the labels when `targets` is None.

  Raises:
    ValueError: no examples, labels or targets not [N], or non-finite images.
  """
  images = np.asarray(images, np.float32)
  labels = np.asarray(labels, np.int32)
  num_examples = images.shape[0]
  if labels.shape != (num_examples,):
    raise ValueError(f'labels must have shape [{num_examples}], found {labels.shape}')
  if num_examples == 0:
    raise ValueError('no examples to attack')
  if not np.all(np.isfinite(images)):
    raise ValueError('images hold NaN or infinite values')
  attack_labels = labels if targets is None else np.asarray(targets, np.int32)
  if attack_labels.shape != (num_examples,):
    raise ValueError(f'targets must have shape [{num_examples}], found {attack_labels.shape}')
  return images, labels, attack_labels


class CompiledAttack(NamedTuple):
  """An attack's batch programs, compiled for one or two batch shapes (`compile_attack`).

  Attributes:
    programs: {batch shape: the compiled `program(params, x, y, y_attack, key_data,
      value, clean_pred)`}; the full shape `batch_size`, and a last batch's smaller one
      where `batch_shapes` gives it.
    predict: the jitted clean-prediction function, `predict(params, x) -> [B]`, or
      `predict(targets, x) -> [B, T]` for a transfer program; `predict_clean` runs it
      once per model, so it compiles on first use (untimed), not with the attack.
    params: the model parameters, placed as the programs expect (replicated on a mesh).
    batch_size: the full batch shape; other batches are padded to it unless `programs`
      has their shape.
    targeted: whether success means reaching the target.
    compile_seconds: the ahead-of-time compilation time of all the programs.
    mesh: the device mesh the batches are split over, or None.
    num_targets: 0 for an attack scored on its own model; T for a transfer program
      (`compile_transfer`), whose params are (source, targets stacked on axis 0) and
      whose clean predictions are [B, T].
  """

  programs: dict[int, Any]
  predict: Callable[[Any, jax.Array], jax.Array]
  params: Any
  batch_size: int
  targeted: bool
  compile_seconds: float
  mesh: Mesh | None
  num_targets: int = 0

  @property
  def scored_params(self) -> Any:
    """The parameters the clean predictions are of: the model's, or the targets'."""
    return self.params[1] if self.num_targets else self.params


def compile_attack(
  make_attack: Callable[[jax.Array], Callable[..., jax.Array]],
  apply_fn: Callable[[Any, jax.Array], jax.Array],
  params: Any,
  image_shape: tuple[int, ...],
  *,
  batch_size: int,
  targeted: bool,
  mesh: Mesh | None = None,
  num_examples: int | None = None,
) -> CompiledAttack:
  """Compiles the batch program of `make_attack(value)` once, for any float32 `value`.

  Args:
    make_attack: traced float32 scalar → `attack(apply_fn, params, x, y, key) -> x_adv`;
      it may ignore the value (a fixed attack) or use it as a hyperparameter.
    apply_fn, params: the model (`run_attack`).
    image_shape: [H, W, C] of one input.
    batch_size: examples per batch (a multiple of the mesh size on a mesh).
    targeted: whether the attack labels are targets.
    mesh: a 1-D device mesh to split batches over, or None.
    num_examples: the size of the passes it will run, for `batch_shapes`; None
      compiles the full shape only (every last batch padded).
  """
  program = _batch_program(make_attack, apply_fn, targeted)
  predict = _predict_program(apply_fn, None)
  shapes = _shapes(num_examples, batch_size, mesh)
  return _compile(program, predict, params, image_shape, shapes, targeted, mesh, num_targets=0)


def compile_transfer(
  make_attack: Callable[[jax.Array], Callable[..., jax.Array]],
  apply_fn: Callable[[Any, jax.Array], jax.Array],
  source_params: Any,
  target_params: Any,
  image_shape: tuple[int, ...],
  *,
  batch_size: int,
  targeted: bool,
  mesh: Mesh | None = None,
  target_axis: str | None = None,
  num_examples: int | None = None,
) -> CompiledAttack:
  """`compile_attack` for transfer: craft on `source_params`, score every target model.

  Args:
    make_attack, apply_fn, image_shape, batch_size, targeted, mesh, num_examples: as
      `compile_attack`.
    source_params: the model the adversarials are crafted on.
    target_params: T models of the same architecture, every leaf stacked [T, ...]; the
      adversarials of a batch are scored on all of them in the same program.
    target_axis: `vmap` or `map` over the targets; None: `default_target_axis()`.
  """
  num_targets = jax.tree.leaves(target_params)[0].shape[0]
  target_axis = target_axis or default_target_axis()
  if target_axis not in ('vmap', 'map'):
    raise ValueError(f"target_axis must be 'vmap' or 'map', found {target_axis!r}")
  program = _transfer_program(make_attack, apply_fn, targeted, target_axis)
  predict = _predict_program(apply_fn, target_axis)
  models = (source_params, target_params)
  shapes = _shapes(num_examples, batch_size, mesh)
  return _compile(program, predict, models, image_shape, shapes, targeted, mesh, num_targets)


def _shapes(num_examples: int | None, batch_size: int, mesh: Mesh | None) -> tuple[int, ...]:
  if num_examples is None:
    return (batch_size,)
  return batch_shapes(num_examples, batch_size, mesh.size if mesh is not None else 1)


def predict_clean(attack: CompiledAttack, images: np.ndarray) -> np.ndarray:
  """The clean predictions of `images`, int32 [N] (or [N, T] for a transfer program's
  targets), in the program's batches.

  The same for every attack on the model(s): compute it once and pass it to each
  `run_compiled` / `run_transfer`.
  """
  images = np.asarray(images, np.float32)
  parts = []
  for lo, shape in _batches(attack, images.shape[0]):
    x = _pad_to(images[lo : lo + attack.batch_size], shape)
    if attack.mesh is not None:
      x = _global_batch(x, sharding.leading_axis_sharding(attack.mesh))
    predictions = attack.predict(attack.scored_params, x)
    if jax.process_count() > 1:
      predictions = multihost_utils.process_allgather(predictions, tiled=True)
    parts.append(np.asarray(predictions))
  return np.concatenate(parts)[: images.shape[0]]


def with_params(attack: CompiledAttack, params: Any) -> CompiledAttack:
  """The same compiled programs on another model of the same architecture: `params` (the
  model, or a transfer program's source) placed as the programs expect."""
  placed = _place(params, attack.mesh)
  return attack._replace(params=(placed, attack.params[1]) if attack.num_targets else placed)


def _place(params: Any, mesh: Mesh | None) -> Any:
  """`params` replicated over `mesh`'s devices, or as they are without a mesh."""
  if mesh is None:
    return params
  return jax.tree.map(lambda leaf: sharding.global_array(leaf, sharding.replicated(mesh)), params)


def _compile(program, predict, params, image_shape, shapes, targeted, mesh, num_targets):
  """Places `params` (replicated on a mesh), compiles `program` ahead of time for every
  batch shape of `shapes` (the first is the full one) and jits `predict`."""
  batch_sharding = None
  if mesh is not None:
    for shape in shapes:
      sharding.check_divisible(shape, mesh, 'batch_size')
    batch_sharding = sharding.leading_axis_sharding(mesh)
  params = _place(params, mesh)

  def rows(shape, *tail, dtype=jnp.int32):
    return jax.ShapeDtypeStruct((shape, *tail), dtype, sharding=batch_sharding)

  key_data = jax.random.key_data(jax.random.key(0))
  value = jax.ShapeDtypeStruct((), jnp.float32)
  start = time.perf_counter()
  programs = {}
  for shape in shapes:
    x = rows(shape, *image_shape, dtype=jnp.float32)
    clean_pred = rows(shape, num_targets) if num_targets else rows(shape)
    lowered = jax.jit(program).lower(params, x, rows(shape), rows(shape), key_data, value,
                                     clean_pred)  # fmt: skip
    programs[shape] = lowered.compile()
  seconds = time.perf_counter() - start
  return CompiledAttack(
    programs, jax.jit(predict), params, shapes[0], targeted, seconds, mesh, num_targets
  )


def _batches(attack: CompiledAttack, num_examples: int) -> list[tuple[int, int]]:
  """(first row, program shape) of every batch of a pass over `num_examples`."""
  out = []
  for lo in range(0, num_examples, attack.batch_size):
    size = min(attack.batch_size, num_examples - lo)
    fitting = [shape for shape in attack.programs if shape >= size]
    out.append((lo, min(fitting)))
  return out


def _run_batch(attack: CompiledAttack, shape: int, host_batch, key_data, value):
  """Runs one padded batch `(x, y, y_attack, clean_pred)` through the program of `shape`
  to `block_until_ready` (the timed part).

  Returns:
    The program's outputs, gathered from every process.
  """
  value = np.float32(value)
  if attack.mesh is not None:
    batch_sharding = sharding.leading_axis_sharding(attack.mesh)
    host_batch = [_global_batch(a, batch_sharding) for a in host_batch]
    replicated = sharding.replicated(attack.mesh)
    key_data = sharding.global_array(key_data, replicated)
    value = sharding.global_array(value, replicated)
  x, y_true, y_attack, clean_pred = host_batch
  result = attack.programs[shape](attack.params, x, y_true, y_attack, key_data, value, clean_pred)
  result = jax.block_until_ready(result)
  if jax.process_count() > 1:
    result = multihost_utils.process_allgather(result, tiled=True)
  return result


def _attack_run(
  outputs: list, num_examples: int, batch_seconds, compile_seconds: float, targeted: bool
) -> AttackRun:
  """The `AttackRun` from every batch's program outputs (padding rows dropped)."""
  columns = [np.concatenate(parts)[:num_examples] for parts in zip(*outputs, strict=False)]
  clean_correct, adv_correct, adv_pred, adv_gap, label_in_top2, success, linf, l2 = columns
  return AttackRun(
    clean_correct=clean_correct,
    adv_correct=adv_correct,
    adv_pred=adv_pred,
    adv_gap=adv_gap,
    label_in_top2=label_in_top2,
    success=success,
    linf=linf,
    l2=l2,
    batch_seconds=batch_seconds,
    compile_seconds=compile_seconds,
    targeted=targeted,
  )


def run_attack(
  attack: Callable[..., jax.Array],
  apply_fn: Callable[[Any, jax.Array], jax.Array],
  params: Any,
  images: np.ndarray,
  labels: np.ndarray,
  *,
  key: jax.Array,
  batch_size: int,
  targets: np.ndarray | None = None,
  on_batch: BatchCallback | None = None,
  mesh: Mesh | None = None,
) -> AttackRun:
  """Attacks `images` batch by batch and returns per-sample records and timings.

  Args:
    attack: `attack(apply_fn, params, x, y, key) -> x_adv`.
    apply_fn: `apply_fn(params, x) -> logits` on the attack's input space.
    params: model parameters (one model).
    images: float32 [N, H, W, C] in the attack's input space.
    labels: int [N], true classes.
    key: PRNG key; batch i uses `fold_in(key, i)`, so results do not depend on
      which batches ran before (a resumed run gives the same numbers).
    batch_size: examples per batch; the last batch as `batch_shapes` says.
    targets: int [N] target classes for a targeted attack, or None (untargeted).
    on_batch: progress callback.
    mesh: a 1-D device mesh: each batch is split over its devices (batch_size
      must be a multiple of its size) and the parameters replicated; None runs
      on the default device. The numbers do not depend on the mesh.

  Returns:
    An `AttackRun` over the N examples; its times exclude the clean predictions.
  """
  images, labels, _ = _checked_inputs(images, labels, targets)
  compiled = compile_attack(
    lambda value: attack,
    apply_fn,
    params,
    images.shape[1:],
    batch_size=min(batch_size, images.shape[0]),
    targeted=targets is not None,
    mesh=mesh,
    num_examples=images.shape[0],
  )
  return run_compiled(compiled, images, labels, key=key, targets=targets, on_batch=on_batch)


def run_compiled(
  attack: CompiledAttack,
  images: np.ndarray,
  labels: np.ndarray,
  *,
  key: jax.Array,
  value: float = 0.0,
  targets: np.ndarray | None = None,
  on_batch: BatchCallback | None = None,
  clean_predictions: np.ndarray | None = None,
) -> AttackRun:
  """`run_attack` with a compiled program: `value` is the traced scalar it was built for.

  Args:
    attack: from `compile_attack` (its batch size and mode must fit the call).
    images, labels, key, targets, on_batch: as `run_attack`.
    value: the scalar passed to the program (a sweep point's hyperparameter).
    clean_predictions: int [N], the model's clean predictions (`predict_clean`, the same
      for every attack on the model); computed here, untimed, when None.

  Returns:
    An `AttackRun`; its `compile_seconds` is the program's (shared by every call).
  """
  if attack.num_targets:
    raise ValueError('a transfer program runs with run_transfer')
  if clean_predictions is None:
    clean_predictions = predict_clean(attack, images)
  outputs, batch_seconds = _run_batches(
    attack, images, labels, key, value, targets, on_batch, clean_predictions
  )
  num_examples = np.asarray(images).shape[0]
  return _attack_run(outputs, num_examples, batch_seconds, attack.compile_seconds, attack.targeted)


def run_transfer(
  attack: CompiledAttack,
  images: np.ndarray,
  labels: np.ndarray,
  *,
  key: jax.Array,
  source_params: Any = None,
  clean_predictions: np.ndarray | None = None,
  value: float = 0.0,
  targets: np.ndarray | None = None,
  on_batch: BatchCallback | None = None,
) -> list[AttackRun]:
  """Runs a `compile_transfer` program: one `AttackRun` per target model, in stacking order.

  `source_params` (any model of the program's architecture) replaces the source it was
  compiled with, so one program serves every source; `clean_predictions` [N, T]
  (`predict_clean`, the same for every source) is computed here when not given. Every
  run shares the crafting pass: its `batch_seconds` (crafting on the source and scoring
  all targets) and `compile_seconds` are the same for every target.
  """
  if not attack.num_targets:
    raise ValueError('run_transfer needs a program from compile_transfer')
  if source_params is not None:
    attack = with_params(attack, source_params)
  if clean_predictions is None:
    clean_predictions = predict_clean(attack, images)
  outputs, batch_seconds = _run_batches(
    attack, images, labels, key, value, targets, on_batch, clean_predictions
  )
  num_examples = np.asarray(images).shape[0]
  return [
    _attack_run(
      [[column[:, t] for column in batch] for batch in outputs],
      num_examples,
      batch_seconds,
      attack.compile_seconds,
      attack.targeted,
    )
    for t in range(attack.num_targets)
  ]


def _run_batches(
  attack: CompiledAttack, images, labels, key, value, targets, on_batch, clean_predictions
):
  """(per-batch host outputs, batch seconds [num_batches]) of a compiled program;
  `clean_predictions` [N] or [N, T] are batched alongside the images."""
  images, labels, attack_labels = _checked_inputs(images, labels, targets)
  if (targets is not None) != attack.targeted:
    raise ValueError(f'the program was compiled targeted={attack.targeted}; targets do not fit')
  clean_predictions = np.asarray(clean_predictions, np.int32)
  expected = (images.shape[0], attack.num_targets) if attack.num_targets else images.shape[:1]
  if clean_predictions.shape != expected:
    raise ValueError(
      f'clean_predictions must have shape {list(expected)}, found {clean_predictions.shape}; '
      'compute them with predict_clean on the same images'
    )
  batches = _batches(attack, images.shape[0])
  outputs = []
  batch_seconds = np.zeros(len(batches))
  for index, (lo, shape) in enumerate(batches):
    rows = slice(lo, lo + attack.batch_size)
    columns = (images, labels, attack_labels, clean_predictions)
    host_batch = [_pad_to(a[rows], shape) for a in columns]
    start = time.perf_counter()
    key_data = jax.random.key_data(jax.random.fold_in(key, index))
    result = _run_batch(attack, shape, host_batch, key_data, value)
    batch_seconds[index] = time.perf_counter() - start
    outputs.append([np.asarray(r) for r in result])
    if on_batch is not None:
      on_batch(index, len(batches), batch_seconds[index])
  return outputs, batch_seconds


def identity_attack(apply_fn, params, x, y, key):
  """The `clean` pass: no perturbation. Its whole-pass time (one forward pass: the clean
  predictions come in) is BEARD's clean time T0."""
  del apply_fn, params, y, key
  return x

"""`--transfer`: adversarials crafted on each model of the pool, scored on every model.

For every source model, attack and mode the plan runs (sweep points aside), one pass
crafts the adversarials batch by batch on the source and scores them on all T pool
models, the source included (BEARD's `eval_nets` hold it too), in the same compiled
program (`runner.compile_transfer`; one program per attack and mode serves every
source). Each (source, target, attack, mode) gets a record: the cell fields name the
source, `transfer_to` the target (`<METHOD>/ipc<IPC>/seed<SEED>/<training>`), and the
outcome fields (`clean_acc`, `robust_acc`, `asr`, ...) are the target's; the timing is
the shared pass. The crafting key is the source's white-box cell key, so the diagonal
reproduces the white-box record. Under `beard`, the passes BEARD's transfer loop leaves
clean (`left_clean`) are scored on clean images (`runs_as` 'clean', empty `hparams`).
Records resume like white-box cells: a pass runs again only for the targets it has not
recorded. The matrix, board and heatmap: `beard_jax.leaderboard.transfer`; the loop:
`run.run_transfer_passes`.
"""

from __future__ import annotations

import jax
import numpy as np
from absl import logging

from beard_jax.benchmark.plan import Cell, RunPlan
from beard_jax.evaluate.results import ResultStore
from beard_jax.models.pool import ModelEntry


def model_id(entry: ModelEntry) -> str:
  """`DM/ipc10/seed0/standard`: a pool model as a record's `transfer_to` names it."""
  return f'{entry.method}/ipc{entry.ipc}/seed{entry.seed}/{entry.training}'


def left_clean(plan: RunPlan, attack: str, targeted: bool) -> bool:
  """Whether the pass scores clean images (`Protocol.transfer_left_clean`: under `beard`,
  targeted DeepFool and AutoAttack, which its transfer loop only prints for, and Square
  and SPSA, which it has no branch for)."""
  return (attack, targeted) in plan.protocol.transfer_left_clean


def transfer_units(entries: list[ModelEntry], plan: RunPlan) -> list[Cell]:
  """The crafting passes: (source, attack, mode) for every pair the plan runs, and the
  `left_clean` pairs; no sweeps."""
  return [
    Cell(entry, attack, targeted)
    for entry in entries
    for targeted in plan.modes
    for attack in plan.attacks
    if plan.runs(attack, targeted) or left_clean(plan, attack, targeted)
  ]


def target_cells(unit: Cell, entries: list[ModelEntry]) -> list[Cell]:
  """The records a pass writes: one per target model."""
  return [unit._replace(transfer_to=model_id(target)) for target in entries]


def stack_params(params: list):
  """T models' parameters, every leaf stacked on a new leading axis [T, ...]."""
  return jax.tree.map(lambda *leaves: np.stack([np.asarray(a) for a in leaves]), *params)


def pending_units(
  units: list[Cell], entries: list[ModelEntry], plan: RunPlan, store: ResultStore
) -> list[Cell]:
  """The passes with at least one target not yet recorded."""
  protocol = plan.protocol.name
  return [
    unit
    for unit in units
    if not all(store.is_done(cell.key(protocol)) for cell in target_cells(unit, entries))
  ]


def transfer_inputs(source_hash: str, target_hash: str, test_hash: str) -> dict[str, str]:
  """What a transfer record was computed from (checked on resume like white-box inputs)."""
  return {'model_sha256': source_hash, 'target_sha256': target_hash, 'test_set_sha256': test_hash}


def log_pass(unit: Cell, done: int, total: int, runs, entries: list[ModelEntry]) -> None:
  """One line per finished pass: the source, attack, mode and each target's robust accuracy."""
  accuracies = ', '.join(
    f'{model_id(e)} {run.robust_accuracy:.1f}%' for e, run in zip(entries, runs, strict=True)
  )
  logging.info(
    'transfer %d/%d: %s %s %s -> %s (%.1f s)',
    done,
    total,
    model_id(unit.entry),
    unit.attack,
    unit.mode,
    accuracies,
    float(runs[0].total_seconds),
  )

"""The one resolve step: a config becomes a frozen, validated `RunPlan` before any work.

Everything a run can get wrong from its flags is checked here, in the order a user
reads the flags, before data is loaded or a model trained: names (dataset, protocol,
attacks, modes, recipe, metrics), ranges (counts, alpha), that the attack defines
each requested mode, the sweep (`sweep.py`), and that the paths exist. The protocol's
defaults (batch size, matmul precision) are filled in and each attack's
hyperparameters are resolved once, scheduling knobs included, so `run.py` only
orchestrates and every record names what ran. `plan_cells` turns the plan and the
pool's models into the run's cells.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import ml_collections

import attacks as attack_library
from beard_jax import distill, protocols
from beard_jax.benchmark.sweep import Sweep, parse_sweep, swept_attacks
from beard_jax.data.specs import DATASET_SPECS, DatasetSpec, get_dataset_spec
from beard_jax.errors import ConfigError
from beard_jax.evaluate.results import RESULTS_FILE, cell_key
from beard_jax.metrics import formulas
from beard_jax.models.pool import ModelEntry
from beard_jax.train.recipes import RECIPES

# JAX's float32 matmul precisions that `config.matmul_precision` accepts.
MATMUL_PRECISIONS = ('default', 'high', 'highest')
MODES = attack_library.MODES
FULL_SIZE = 'full'
DATA_DIR_ENV = 'BEARD_DATA_DIR'  # --data_dir's default when set.
# Config fields that change a cell's numbers; the workdir is bound to them.
RESULT_FIELDS = (
  'dataset',
  'ipc',
  'protocol',
  'num_examples',
  'batch_size',
  'matmul_precision',
  'seed',
  'seeds',
  'recipe',
  'epochs',
  'train_attack',
  'experiment',
  'distill_iterations',
  'distill_batch_real',
)
# Integer fields and the smallest value each accepts.
_MINIMUM = {
  'ipc': 0,
  'num_examples': 0,
  'batch_size': 0,
  'seeds': 1,
  'epochs': 0,
  'experiment': 0,
  'distill_iterations': 0,
  'distill_batch_real': 0,
  'num_tasks': 1,
  'num_processes': 1,
}


class Cell(NamedTuple):
  """One unit of work and of resumption: an attack in one mode on one model.

  `sweep` is '' for the ordinary cell, else the sweep point it runs (`eps=2/255`);
  `transfer_to` is '' for a white-box cell, else the model scored on the adversarials
  crafted on `entry` (`transfer.model_id`).
  """

  entry: ModelEntry
  attack: str
  targeted: bool
  sweep: str = ''
  transfer_to: str = ''

  def key(self, protocol: str) -> tuple:
    e = self.entry
    return cell_key(
      dict(
        method=e.method,
        dataset=e.dataset,
        ipc=e.ipc,
        seed=e.seed,
        protocol=protocol,
        training=e.training,
        attack=self.attack,
        targeted=self.targeted,
        sweep=self.sweep,
        transfer_to=self.transfer_to,
      )
    )

  @property
  def mode(self) -> str:
    return 'targeted' if self.targeted else 'untargeted'


@dataclasses.dataclass(frozen=True)
class RunPlan:
  """A validated run: the resolved config and everything derived from it.

  Attributes:
    config: the config with the protocol's defaults filled in (frozen).
    protocol: the threat model.
    spec: the dataset.
    modes: `targeted` flags of the requested modes, in the order given.
    attacks: the attacks to run (without 'clean'), in the order given.
    hparams: (attack, targeted) → the resolved keyword arguments of its factory (that of
      `runs_as`), for every pair the run will execute (pairs the protocol skips are absent).
    methods: upper-case method names to keep (empty: all found).
    results_file: the records file this task appends to.
    sweeps: (attack, targeted) → its `--sweep` (values typed), for the swept pairs.
  """

  config: ml_collections.FrozenConfigDict
  protocol: protocols.Protocol
  spec: DatasetSpec
  modes: tuple[bool, ...]
  attacks: tuple[str, ...]
  hparams: Mapping[tuple[str, bool], Mapping[str, Any]]
  methods: tuple[str, ...]
  results_file: str
  sweeps: Mapping[tuple[str, bool], Sweep] = dataclasses.field(default_factory=dict)

  def cell_hparams(self, cell: Cell) -> dict[str, Any]:
    """The attack factory's keyword arguments for `cell`: the point's value on a sweep cell."""
    if cell.attack == 'clean':
      return {}
    hparams = dict(self.hparams[(cell.attack, cell.targeted)])
    if cell.sweep:
      sweep = self.sweeps[(cell.attack, cell.targeted)]
      (point,) = [p for p in sweep.points if sweep.label(p) == cell.sweep]
      hparams[sweep.name] = point.value
    return hparams

  def runs_as(self, attack: str, targeted: bool) -> str:
    """The attack that really runs in the (attack, mode) cell: `attack`, or what the
    protocol's code runs under that name (`Protocol.runs_instead`)."""
    return self.protocol.runs_instead.get((attack, targeted), attack)

  def runs(self, attack: str, targeted: bool) -> bool:
    """Whether the plan executes `attack` in that mode ('clean' always runs)."""
    return attack == 'clean' or (attack, targeted) in self.hparams

  @property
  def trains_models(self) -> bool:
    """A dataset pool (or the Full-size baseline) gives the models, not a model pool."""
    return not self.config.model_pool

  def result_config(self) -> dict[str, Any]:
    """The part of the config that determines results (hashed into every record).

    `distill_hparams` joins only when set, so that workdirs from before the flag keep
    their hash."""
    fields = {field: self.config[field] for field in RESULT_FIELDS}
    if self.config.distill_hparams:
      fields['distill_hparams'] = self.config.distill_hparams
    return fields


def split_list(text: str) -> list[str]:
  """'a, b,,c' → ['a', 'b', 'c']."""
  return [item.strip() for item in text.split(',') if item.strip()]


def _choose(what: str, value: str, choices) -> None:
  if value not in choices:
    raise ConfigError(f'unknown --{what} {value!r}; choose from {", ".join(sorted(choices))}')


def _check_ranges(config) -> None:
  for field, minimum in _MINIMUM.items():
    if config[field] < minimum:
      raise ConfigError(f'--{field} must be >= {minimum}, got {config[field]}')
  if not 0 <= config.task_index < config.num_tasks:
    raise ConfigError(
      f'need 0 <= --task_index < --num_tasks, got task_index={config.task_index}, '
      f'num_tasks={config.num_tasks}'
    )
  if config.merge and config.num_tasks == 1:
    raise ConfigError('--merge gathers the task files of a sweep: give --num_tasks > 1 too')
  if not 0 <= config.alpha <= 1:
    raise ConfigError(f'--alpha must lie in [0, 1], got {config.alpha}')


def _check_paths(config) -> None:
  if config.download and not config.data_dir:
    raise ConfigError(f'--download needs --data_dir (or ${DATA_DIR_ENV}): where to put the data')
  for flag in ('data_dir', 'dataset_pool', 'model_pool'):
    path = config[flag]
    if flag == 'data_dir' and config.download:
      continue  # Created by the download.
    if path and not os.path.isdir(path):
      raise ConfigError(f'--{flag}={path} is not a directory ({os.path.abspath(path)})')
  if config.model_pool and (config.dataset_pool or config.distilled_set):
    raise ConfigError('give either --model_pool (trained models) or distilled sets, not both')
  if config.distilled_set and not os.path.exists(config.distilled_set):
    raise ConfigError(f'--distilled_set={config.distilled_set} does not exist')
  full = FULL_SIZE in [m.lower() for m in split_list(config.methods)]
  if not (
    config.model_pool or config.dataset_pool or config.distilled_set or config.distill or full
  ):
    raise ConfigError(
      'nothing to evaluate: give --model_pool (trained models), --dataset_pool (distilled '
      f'sets), --distill (methods to build) or --methods={FULL_SIZE} (train on the real '
      'training split)'
    )


def _check_distill(config, spec: DatasetSpec) -> None:
  if config.model_pool or not config.distill:
    return
  methods = split_list(config.distill)
  for name in methods:
    _choose('distill', name, distill.METHODS)
  if config.ipc < 1:
    raise ConfigError('--distill builds sets of one IPC: give --ipc >= 1')
  try:
    overrides = distill.parse_overrides(config.distill_hparams)
    fields = set()
    for method in methods:
      fields.update(distill.method_config(method, spec, config.ipc)._fields)
      distill.typed_overrides(method, spec, config.ipc, overrides)
  except ValueError as error:
    raise ConfigError(f'--distill_hparams: {error}') from None
  unknown = sorted(set(overrides) - fields)
  if unknown:
    raise ConfigError(
      f'--distill_hparams: {", ".join(unknown)} is not a hyperparameter of --distill='
      f'{config.distill}; choose from {", ".join(sorted(fields))}'
    )


def _resolve_attacks(config, protocol, batch_size: int) -> tuple[tuple, tuple, dict]:
  """(modes, attacks, hparams) of the plan; raises ConfigError on any unknown name or mode."""
  mode_names = split_list(config.modes)
  if not mode_names:
    raise ConfigError(f'--modes is empty; choose from {", ".join(MODES)}')
  for mode in mode_names:
    _choose('modes', mode, MODES)
  names = [a for a in split_list(config.attacks) if a != 'clean']
  for name in names:
    if name not in protocol.attack_hparams:
      raise ConfigError(
        f'unknown --attacks {name!r} for the {protocol.name} protocol; choose from '
        f'clean, {", ".join(sorted(protocol.attack_hparams))}'
      )
  hparams = {}
  for mode in mode_names:
    targeted = mode == 'targeted'
    for name in names:
      if targeted and name in protocol.untargeted_only:
        continue  # BEARD records clean accuracy there; its metrics drop the row.
      runs_as = protocol.runs_instead.get((name, targeted), name)
      if mode not in attack_library.get_spec(runs_as).modes:
        raise ConfigError(f'attack {name!r} has no {mode} mode; drop it from --attacks or --modes')
      settings = dict(protocol.attack_hparams[runs_as], targeted=targeted)
      hparams[(name, targeted)] = attack_library.resolve_hparams(runs_as, settings, batch_size)
  return tuple(m == 'targeted' for m in mode_names), tuple(names), hparams


def with_protocol_defaults(config, protocol: protocols.Protocol):
  """A copy of `config` with the protocol's batch size and matmul precision filled in.

  Fields left to the protocol (batch_size 0, matmul_precision '') take its values, so
  `config.json` and the hash bound to every record name what actually ran.
  """
  config = config.copy_and_resolve_references()
  if not config.batch_size:
    config.batch_size = protocol.batch_size
  if not config.matmul_precision:
    config.matmul_precision = protocol.matmul_precision
  return config


def resolve_plan(config) -> RunPlan:
  """Validates `config` and resolves it into a `RunPlan`; touches no data.

  Args:
    config: an `ml_collections.ConfigDict` with the fields of `configs/default.py`.

  Raises:
    ConfigError: a value that cannot run; the message names the flag and the choices.
  """
  _check_ranges(config)
  _choose('protocol', config.protocol, protocols.PROTOCOLS)
  protocol = protocols.get_protocol(config.protocol)
  try:
    spec = get_dataset_spec(config.dataset)
  except ValueError:
    raise ConfigError(
      f'unknown --dataset {config.dataset!r}; choose from {", ".join(sorted(DATASET_SPECS))}'
    ) from None
  config = with_protocol_defaults(config, protocol)
  config.dataset = spec.name
  if not config.data_dir:
    config.data_dir = os.environ.get(DATA_DIR_ENV, '')
  _choose('matmul_precision', config.matmul_precision, MATMUL_PRECISIONS)
  _choose('recipe', config.recipe, RECIPES)
  if config.train_attack:
    _choose('train_attack', config.train_attack, protocol.attack_hparams)
  _choose('metrics_type', config.metrics_type, formulas.RR_FUNCTIONS)
  _choose('clean_time', config.clean_time, formulas.CLEAN_TIME_RULES)
  modes, names, hparams = _resolve_attacks(config, protocol, config.batch_size)
  if config.transfer and config.num_tasks > 1 and not config.merge:
    raise ConfigError(
      '--transfer scores every model of the pool, which a task of --num_tasks > 1 does not '
      'hold: run the transfer in one task'
    )
  sweep = parse_sweep(config.sweep)
  sweeps = swept_attacks(sweep, hparams) if sweep else {}
  _check_paths(config)
  _check_distill(config, spec)
  results_file = RESULTS_FILE
  if config.num_tasks > 1 and not config.merge:
    results_file = f'results.task-{config.task_index}-of-{config.num_tasks}.jsonl'
  return RunPlan(
    config=ml_collections.FrozenConfigDict(config),
    protocol=protocol,
    spec=spec,
    modes=modes,
    attacks=names,
    hparams=hparams,
    methods=tuple(m.upper() for m in split_list(config.methods)),
    results_file=results_file,
    sweeps=sweeps,
  )


def plan_cells(entries: list[ModelEntry], plan: RunPlan) -> list[Cell]:
  """Every cell of the run, in a fixed order: models, then modes, then clean and attacks,
  each attack's sweep points right after its ordinary cell."""
  cells = []
  for entry in entries:
    for targeted in plan.modes:
      for name in ['clean', *plan.attacks]:
        if plan.runs(name, targeted):
          cells.append(Cell(entry, name, targeted))
          sweep = plan.sweeps.get((name, targeted))
          for point in sweep.points if sweep else ():
            cells.append(Cell(entry, name, targeted, sweep.label(point)))
  return cells

"""Runs the BEARD benchmark: model pool → attacks → records → metrics → leaderboards.

  python launch.py --dataset=cifar10 --ipc=1 --dataset_pool=../shared/data/dataset_pool \
    --data_dir=../shared/data --workdir=runs/quick

Every field of the config file (`--config`, default configs/default.py next to this
script) has a flag of the same name; a flag given on the command line overrides the
file. `--config.<field>=...` works too. Rerunning a command resumes its workdir.
A problem with a flag, an input file or the workdir is one line on stderr and exit
code 2: a `UserError`, or a ValueError/OSError, which the readers of this package raise
only with a message naming the file or value at fault; `--verbosity=1` adds the
traceback to the log.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from beard_jax.host_memory import keep_freed_memory
from configs import default as default_config

_CONFIG = config_flags.DEFINE_config_file(
  'config',
  os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs', 'default.py'),
  'Config file (configs/*.py); the flags below override it.',
)

_DEFINE_BY_TYPE = {
  bool: flags.DEFINE_bool,
  int: flags.DEFINE_integer,
  float: flags.DEFINE_float,
  str: flags.DEFINE_string,
}


def _define_override_flags() -> list[str]:
  """One flag per config field, with the default config's value and its help."""
  names = []
  for name, value in default_config.get_config().items():
    _DEFINE_BY_TYPE[type(value)](name, value, default_config.HELP[name])
    names.append(name)
  return names


_OVERRIDABLE = _define_override_flags()


def _quiet_backend_probes() -> None:
  """Hides JAX's INFO lines about accelerator plugins it cannot load (the TPU probe on CPU-only
  machines); a missing accelerator the run needs still shows, as the devices it reports."""
  import logging as python_logging

  python_logging.getLogger('jax._src.xla_bridge').setLevel(python_logging.WARNING)


def main(argv):
  keep_freed_memory()  # Before JAX starts its threads: speed only (beard_jax/host_memory.py).
  _quiet_backend_probes()
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  config = _CONFIG.value
  for name in _OVERRIDABLE:
    if flags.FLAGS[name].present:
      config[name] = flags.FLAGS[name].value
  # JAX starts after flag parsing.
  from beard_jax.benchmark.run import run_benchmark
  from beard_jax.errors import UserError
  from beard_jax.sharding import initialize_distributed

  try:
    initialize_distributed(config.coordinator_address, config.num_processes, config.process_id)
    run_benchmark(config)
  except (UserError, ValueError, OSError) as e:
    logging.debug('stopped by an input error', exc_info=True)
    sys.stderr.write(f'launch.py: error: {e}\n')
    sys.exit(2)


if __name__ == '__main__':
  app.run(main)

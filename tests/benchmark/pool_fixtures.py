"""A model pool of random-init ConvNets in project checkpoint format, for launch.py tests."""

import jax

from beard_jax.data.specs import get_dataset_spec
from beard_jax.models import ConvNet, init_params
from beard_jax.models.checkpoints import save_checkpoint


def write_model_pool(pool, methods):
  """Saves one random-init CIFAR-10 ConvNet per method (IPC 10, seed 0) into `pool`."""
  spec = get_dataset_spec('cifar10')
  for index, method in enumerate(methods):
    params = init_params(ConvNet(10), spec, jax.random.key(index))
    save_checkpoint(
      str(pool / f'{method}_seed0'),
      params,
      {'method': method, 'dataset': 'cifar10', 'ipc': 10, 'seed': 0, 'training': 'standard'},
    )
  return pool

"""BEARD's full suite as its published code runs it (the `beard` protocol).

Reproduces the published CIFAR-10 IPC-50 numbers from BEARD's model pool:
  python launch.py --config=configs/beard.py --dataset=cifar10 --ipc=50 \
    --model_pool=../shared/data/beard_model_pool --data_dir=../shared/data --workdir=runs/beard
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.protocol = 'beard'
  config.attacks = 'fgsm,pgd,pgd_l2,cw,deepfool,autoattack'
  config.modes = 'targeted,untargeted'
  # Batch 256 and float32 convolutions come with the protocol (beard_jax/protocols.py).
  config.workdir = 'runs/beard'
  return config

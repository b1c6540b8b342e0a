"""A tiny end-to-end run for tests and the README quick start (minutes on a CPU).

  python launch.py --config=configs/smoke.py --data_dir=../shared/data \
    --dataset_pool=../shared/data/dataset_pool --workdir=runs/smoke
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.ipc = 1
  config.attacks = 'fgsm,pgd,pgd_l2'  # DeepFool and C&W take minutes per 100 images here.
  config.num_examples = 200
  config.batch_size = 100
  config.seeds = 2
  config.epochs = 20
  config.workdir = 'runs/smoke'
  return config

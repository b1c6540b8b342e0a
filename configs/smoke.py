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
  # Sets the pool lacks are built on a tiny budget (the official one takes GPU hours).
  config.distill = 'random,dm'
  config.distill_iterations = 20
  config.distill_batch_real = 32
  config.distill_dir = 'runs/smoke_pool'
  return config

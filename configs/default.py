"""The default benchmark: the `standard` protocol on one dataset and IPC.

Run:
  python launch.py --config=configs/default.py --dataset=cifar10 --ipc=10 \
    --dataset_pool=../shared/data/dataset_pool --data_dir=../shared/data --workdir=runs/c10
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  # What to evaluate.
  config.dataset = 'cifar10'
  config.ipc = 10
  config.methods = ''  # Comma-separated; empty means every method found in the pool.
  config.protocol = 'standard'
  config.attacks = 'fgsm,pgd,pgd_l2,cw,deepfool,autoattack'
  config.modes = 'untargeted,targeted'
  config.num_examples = 0  # First N test images; 0 means the whole test set.
  config.batch_size = 0  # Attack batch; 0 takes the protocol's (beard 256, standard 250).
  # JAX's float32 matmul/conv precision: 'default' lets NVIDIA GPUs compute convolutions in
  # TF32 (fast, rounds inputs to 10-bit mantissas); 'highest' keeps float32 throughout;
  # '' takes the protocol's (beard 'highest', standard 'default').
  config.matmul_precision = ''
  # Where things are.
  config.data_dir = ''  # Real datasets (npz, official layouts or tfds); '' = tfds default.
  config.dataset_pool = ''  # Distilled sets to train a model pool from.
  config.model_pool = ''  # Trained models (project checkpoints or BEARD .pth files).
  config.workdir = 'runs/default'
  # Training the model pool.
  config.seed = 0  # Every random choice derives from it.
  config.seeds = 1  # Models per distilled set, trained as one vmapped program.
  config.recipe = 'sgd'  # 'sgd' (BEARD's code) or 'adam' (the paper's appendix).
  config.epochs = 0  # 0 keeps the recipe's epochs.
  config.train_attack = ''  # 'pgd' trains adversarially (PROTOCOL.md §4).
  config.experiment = 0  # Which distillation of a multi-experiment .pt file.
  # Scale-out: sweep tasks of a batch-job array, and multi-host runs.
  config.task_index = 0  # This task's index in [0, num_tasks).
  config.num_tasks = 1  # >1 splits the cells over tasks; each writes its own records.
  config.merge = False  # Gather the tasks' records into results.jsonl and write reports.
  config.coordinator_address = ''  # host:port of process 0, for multi-host runs.
  config.num_processes = 1
  config.process_id = 0
  # Metrics.
  config.metrics_type = 'beard'  # 'beard', 'rome' or 'rome+'.
  config.alpha = 0.5  # CREI = alpha·RR + (1 − alpha)·AE.
  config.clean_time = 'toolkit'  # 'toolkit' (min of the two clean passes) or 'paper'.
  return config

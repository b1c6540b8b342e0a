"""The default benchmark: the `standard` protocol on one dataset and IPC.

Run:
  python launch.py --config=configs/default.py --dataset=cifar10 --ipc=10 \
    --dataset_pool=../shared/data/dataset_pool --data_dir=../shared/data --workdir=runs/c10

`HELP` explains every field; `launch.py --help` shows it for the flag of the same name.
"""

import ml_collections

HELP = {
  # What to evaluate.
  'dataset': 'cifar10, cifar100 or tinyimagenet',
  'ipc': 'images per class of the distilled sets (and models) to evaluate; 0 = every IPC found',
  'methods': "comma-separated methods to keep (DC,DM,...; 'full' trains on the real training "
  'split); empty = every method found in the pool',
  'protocol': "threat model: 'standard' (attacks on [0, 1] pixels) or 'beard' (BEARD's code, "
  'quirks included)',
  'attacks': 'comma-separated attacks (clean, fgsm, pgd, pgd_l2, cw, deepfool, autoattack, '
  'apgd_ce, apgd_dlr, apgd_t, fab_t, square, spsa; which ones a protocol defines: README)',
  'modes': "comma-separated modes: 'untargeted', 'targeted' (targets (y + 1) mod K)",
  'num_examples': 'attack the first N test images; 0 = the whole test set',
  'batch_size': "attack batch; 0 = the protocol's (beard 256, standard 250)",
  'sweep': 'one attack hyperparameter over values, one record per point, for the curves: '
  "'eps:2/255,4/255,8/255' or 'steps:1,2,4,8'; every attack with it is swept; empty = none",
  'transfer': 'also craft every attack on each model and score it on every model of the pool '
  '(source x target matrices, README: Transfer)',
  'matmul_precision': "JAX float32 conv/matmul precision: 'default' (TF32 on NVIDIA GPUs), "
  "'high', 'highest' (float32 throughout); empty = the protocol's",
  # Where things are.
  'data_dir': 'folder of the real datasets (npz, official layouts or a tfds data dir); '
  "empty = $BEARD_DATA_DIR, else tfds' default",
  'download': "fetch the dataset's official archive into --data_dir first (MD5-checked; "
  'skipped when already unpacked there)',
  'dataset_pool': 'folder of distilled sets made elsewhere to train models on (read only)',
  'distilled_set': 'one distilled set to benchmark alone (.pt, .npz or an MTT folder; README, '
  'Data); method from --methods or the file name',
  'distill': 'comma-separated methods (random, herding, kcenter, dc, dsa, dm, idm, bacon, mtt) '
  'to build from '
  'the real training split where no pool holds them for the dataset and IPC; empty = build '
  'nothing',
  'distill_iterations': 'updates of the iterative methods (dc, dsa, dm, idm, bacon, mtt); 0 = the '
  'official budget',
  'distill_batch_real': 'real images per class per DM/IDM matching step; 0 = the official '
  'number (256, or what the IDM command gives): a budget knob for small machines',
  'distill_hparams': "comma-separated name=value overrides of the built methods' "
  'hyperparameters, applied to every --distill method that has the field (e.g. '
  'num_experts=2,expert_train_epochs=3 for MTT on a small machine); empty = official',
  'distill_dir': 'where built sets are cached (and read from as a second dataset pool)',
  'model_pool': 'folder of trained models (project checkpoints or BEARD .pth files)',
  'workdir': 'where records, models, metrics, reports and leaderboards go; rerunning resumes it',
  # Training the model pool.
  'seed': 'every random choice (initialisation, augmentation, attack starts) derives from it',
  'seeds': 'models per distilled set (seed, seed + 1, ...), trained as one vmapped program',
  'recipe': "training recipe: 'sgd' (BEARD's code) or 'adam' (the paper's appendix)",
  'epochs': "training epochs; 0 = the recipe's",
  'train_attack': "'pgd' trains adversarially with the protocol's PGD; empty = standard training",
  'experiment': 'which distillation of a multi-experiment .pt file to train on',
  # Scale-out.
  'task_index': "this task's index in [0, num_tasks) (batch-job arrays)",
  'num_tasks': '>1 splits the cells over independent tasks, each writing its own records file',
  'merge': "gather the tasks' records into results.jsonl and write the reports",
  'merge_partial': 'with --merge: accept that some tasks left no records (merged as they are)',
  'coordinator_address': 'host:port of process 0, for multi-host runs',
  'num_processes': 'processes of a multi-host run',
  'process_id': "this process's index in a multi-host run",
  'repair': 'keep the first record of every cell recorded twice and move the others aside '
  '(a workdir written by two runs at once), then continue',
  # Metrics.
  'metrics_type': "robustness ratio: 'beard', 'rome' or 'rome+'",
  'alpha': 'CREI = alpha * RR + (1 - alpha) * AE, alpha in [0, 1]',
  'clean_time': "clean-pass time T0 of AE: 'toolkit' (min over both modes) or 'paper'",
}


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.dataset = 'cifar10'
  config.ipc = 10
  config.methods = ''
  config.protocol = 'standard'
  config.attacks = 'fgsm,pgd,pgd_l2,cw,deepfool,autoattack'
  config.modes = 'untargeted,targeted'
  config.num_examples = 0
  config.batch_size = 0
  config.sweep = ''
  config.transfer = False
  config.matmul_precision = ''
  config.data_dir = ''
  config.download = False
  config.dataset_pool = ''
  config.distilled_set = ''
  config.distill = 'random,herding,dm,idm'
  config.distill_iterations = 0
  config.distill_batch_real = 0
  config.distill_hparams = ''
  config.distill_dir = 'runs/dataset_pool'
  config.model_pool = ''
  config.workdir = 'runs/default'
  config.seed = 0
  config.seeds = 1
  config.recipe = 'sgd'
  config.epochs = 0
  config.train_attack = ''
  config.experiment = 0
  config.task_index = 0
  config.num_tasks = 1
  config.merge = False
  config.merge_partial = False
  config.coordinator_address = ''
  config.num_processes = 1
  config.process_id = 0
  config.repair = False
  config.metrics_type = 'beard'
  config.alpha = 0.5
  config.clean_time = 'toolkit'
  return config

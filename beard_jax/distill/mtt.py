"""Matching Training Trajectories (MTT; Cazenavette et al., CVPR 2022), as its official
code (GeorgeCazenavette/mtt-distillation `distill.py`) runs it.

Experts (`experts.py`, the official `buffer.py`) are trained on the real set first.
Then every iteration:

  1. an expert e and a start epoch t < `max_start_epoch` are drawn; θ₀ = θ*_{e,t} and
     the target θ* = θ*_{e,t+expert_epochs} (flattened parameter vectors);
  2. `syn_steps` student steps θ_{i+1} = θ_i − α ∇_θ CE(f_θ(DSA(x_batch)), y_batch)
     on the synthetic set, batches of `batch_syn` (0: all of it) taken from a fresh
     random permutation whenever one is used up, each batch DSA-augmented with its
     own per-image draw, α the learnable synthetic learning rate;
  3. loss = ‖θ_N − θ*‖² / ‖θ₀ − θ*‖², differentiated through all N steps (second
     order) w.r.t. the images and α;
  4. one SGD step (momentum 0.5) on the images (lr `learning_rate`, `lr_img`) and one
     on α (lr `lr_learning_rate`, `lr_lr`), α starting at `initial_syn_lr`
     (`lr_teacher`).

With `zca` the real images are ZCA-whitened (`zca.py`, fit on the real set given)
and experts, students and synthetic images all live in the whitened space; the
pool file holds the images mapped back (the official `images_zca_*.pt`), then
mean/std-normalised as every pool set. Without it, they live in mean/std-
normalised space. The learned α is recorded in the set's sidecar (`learned_lr`).

Memory: the N unrolled steps are a `lax.scan` whose body is `jax.checkpoint`ed
(`remat=True`): the backward pass keeps the N parameter vectors (N·P floats, 6 MB
at N = 50 on CIFAR-10) and recomputes each step's activations, one extra forward
and backward per step instead of N steps of activations.

Deviations from the official code:
  * Experts: trained in groups side by side, expert i of the buffer from
    `fold_in(key, i)`; each iteration draws its expert uniformly from the whole
    buffer (the official `--load_all` branch; without it the code walks the buffer
    files in a shuffled order).
  * The last batch of a permutation may be smaller when `batch_syn` does not divide
    the set (as `torch.split`); here it is padded and masked out of the mean loss. The
    official loop `pop()`s the chunks, so a permutation's short chunk comes first and
    the others follow last to first; the same order here.
  * Randomness: JAX keys; iteration i uses only `fold_in(key, i)`. DSA: the
    project's `dsa_augment`.
  * Iterations: the official loop runs `Iteration + 1` = 5,001 updates but saves
    the images at the top of an iteration, before its update, so its last file
    (`images_5000.pt`) holds 5,000 updates: `OFFICIAL_ITERATIONS`. No evaluation
    during distillation (the official `images_best.pt` is the best of its
    evaluations; the pool here holds the last set).
  * The network is `models/convnet.py`'s ConvNet (width 128, depth 3) for every
    dataset; MTT's Tiny-ImageNet runs use depth 4 (`net_depth` changes it).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax
from jax.flatten_util import ravel_pytree

from beard_jax.data.augment import DEFAULT_STRATEGY, dsa_augment
from beard_jax.data.specs import DatasetSpec
from beard_jax.distill import resumable
from beard_jax.distill.experts import ExpertConfig
from beard_jax.distill.real_data import ClassIndexedData, check_ipc, sample_class
from beard_jax.distill.zca import MTT_EPS, ZCA, unwhiten, whiten
from beard_jax.models.convnet import ConvNet, init_params, normalize

OFFICIAL_ITERATIONS = 5000
INITS = ('real', 'noise')


class MTTConfig(NamedTuple):
  """MTT's hyperparameters (`official_config` gives the published ones per dataset and IPC).

  Attributes:
    syn_steps: student steps per iteration (N).
    expert_epochs: epochs between start and target parameters (M).
    max_start_epoch: start epochs are drawn from [0, max_start_epoch) (T⁺).
    learning_rate: SGD learning rate of the synthetic images (`lr_img`).
    lr_learning_rate: SGD learning rate of the synthetic learning rate (`lr_lr`).
    initial_syn_lr: the synthetic learning rate's start (`lr_teacher`).
    momentum: SGD momentum of both.
    batch_syn: synthetic images per student step; 0 = the whole set.
    zca: ZCA-whiten the real images (experts and distillation in whitened space).
    zca_eps: ZCA regulariser (kornia's `eps`, 0.1 in MTT).
    dsa_strategy: DSA ops of the student steps and the experts; 'none' for none.
    init: `real` (random real images of the class) or `noise` (N(0, 1)).
    num_experts: experts in the buffer (official 100).
    expert_train_epochs: epochs each expert trains (official 50).
    expert_learning_rate: the experts' SGD learning rate.
    expert_batch: the experts' batch size.
    net_width: ConvNet width.
    net_depth: ConvNet depth.
    remat: rematerialise each student step in the backward pass (memory ↔ compute).
  """

  syn_steps: int = 20
  expert_epochs: int = 3
  max_start_epoch: int = 25
  learning_rate: float = 1000.0
  lr_learning_rate: float = 1e-5
  initial_syn_lr: float = 0.01
  momentum: float = 0.5
  batch_syn: int = 0
  zca: bool = False
  zca_eps: float = MTT_EPS
  dsa_strategy: str = DEFAULT_STRATEGY
  init: str = 'real'
  num_experts: int = 100
  expert_train_epochs: int = 50
  expert_learning_rate: float = 0.01
  expert_batch: int = 256
  net_width: int = 128
  net_depth: int = 3
  remat: bool = True


# (N, M, T⁺, lr_img, lr_lr, lr_teacher, batch_syn, zca) per (dataset, IPC): DC-bench's
# commands for MTT (justincui03/dc_benchmark `methods/tm/readme.md`, "provided by the
# author"), the settings BEARD's pool follows. The MTT README shows its table only as an
# image; run scripts of later MTT-based work that copy it give CIFAR-10 IPC 10 as lr_img
# 1e5, lr_lr 1e-4, lr_teacher 0.01 and whiten CIFAR-100 IPC 10, where DC-bench gives the
# values below and no ZCA. Other settings keep `distill.py`'s defaults.
_PUBLISHED = {
  ('cifar10', 1): (50, 2, 2, 100.0, 1e-7, 0.01, 0, True),
  ('cifar10', 10): (30, 2, 20, 100.0, 1e-5, 0.001, 0, True),
  ('cifar10', 50): (30, 2, 40, 1000.0, 1e-5, 0.001, 0, False),
  ('cifar100', 1): (20, 3, 20, 1000.0, 1e-5, 0.01, 0, True),
  ('cifar100', 10): (20, 2, 20, 1000.0, 1e-5, 0.01, 0, False),
  ('cifar100', 50): (80, 2, 40, 1000.0, 1e-5, 0.01, 125, True),
  ('tinyimagenet', 1): (10, 2, 10, 10000.0, 1e-4, 0.01, 0, False),
  ('tinyimagenet', 10): (20, 2, 40, 10000.0, 1e-4, 0.01, 200, False),
  ('tinyimagenet', 50): (20, 2, 40, 10000.0, 1e-4, 0.01, 300, False),
}


def official_config(dataset: str, ipc: int) -> MTTConfig:
  """The published settings for (dataset, ipc); `distill.py`'s defaults elsewhere."""
  if (dataset, ipc) not in _PUBLISHED:
    return MTTConfig()
  steps, epochs, start, lr_img, lr_lr, lr_teacher, batch_syn, whiten = _PUBLISHED[dataset, ipc]
  return MTTConfig(
    syn_steps=steps,
    expert_epochs=epochs,
    max_start_epoch=start,
    learning_rate=lr_img,
    lr_learning_rate=lr_lr,
    initial_syn_lr=lr_teacher,
    batch_syn=batch_syn,
    zca=whiten,
  )


def expert_config(config: MTTConfig) -> ExpertConfig:
  """The experts' training settings carried by an MTT config."""
  return ExpertConfig(
    num_experts=config.num_experts,
    train_epochs=config.expert_train_epochs,
    learning_rate=config.expert_learning_rate,
    batch_size=config.expert_batch,
    dsa_strategy=config.dsa_strategy,
  )


def epochs_needed(config: MTTConfig) -> int:
  """The last expert epoch distillation reads: max_start_epoch − 1 + expert_epochs."""
  return config.max_start_epoch - 1 + config.expert_epochs


def check_config(config: MTTConfig) -> None:
  """Raises ValueError for settings the run cannot use (before any expensive work)."""
  if config.init not in INITS:
    raise ValueError(f'unknown init {config.init!r}; choose from {INITS}')
  for name in ('syn_steps', 'expert_epochs', 'max_start_epoch', 'num_experts'):
    if getattr(config, name) < 1:
      raise ValueError(f'MTT {name} must be ≥ 1, got {getattr(config, name)}')
  if epochs_needed(config) > config.expert_train_epochs:
    raise ValueError(
      f'MTT reads expert epochs up to max_start_epoch - 1 + expert_epochs = '
      f'{epochs_needed(config)}, but experts train {config.expert_train_epochs}; raise '
      'expert_train_epochs or lower max_start_epoch'
    )


def to_model_input(spec: DatasetSpec, whitening: ZCA | None, pixels: jax.Array) -> jax.Array:
  """Pixel-scale float [..., H, W, C] → the space experts and students see."""
  return normalize(spec, pixels) if whitening is None else whiten(whitening, pixels)


def to_normalized(spec: DatasetSpec, whitening: ZCA | None, inputs: jax.Array) -> jax.Array:
  """The inverse of `to_model_input`, then mean/std normalisation (the pool's space)."""
  return inputs if whitening is None else normalize(spec, unwhiten(whitening, inputs))


class MTTState(NamedTuple):
  """Everything an MTT run needs to continue.

  Attributes:
    images: float32 [K, ipc, H, W, C], the synthetic set in model-input space.
    syn_lr: float32 [], the learnable synthetic learning rate α.
    opt_state: the SGD states of (images, syn_lr).
    iteration: int32 [], iterations done.
    key: the run's key; iteration i uses `fold_in(key, i)`.
  """

  images: jax.Array
  syn_lr: jax.Array
  opt_state: tuple
  iteration: jax.Array
  key: jax.Array


def _optimizers(config: MTTConfig) -> tuple[optax.GradientTransformation, ...]:
  return (
    optax.sgd(config.learning_rate, momentum=config.momentum or None),
    optax.sgd(config.lr_learning_rate, momentum=config.momentum or None),
  )


@functools.partial(jax.jit, static_argnames=('spec', 'ipc', 'config'))
def _init(key, data, whitening, spec, ipc, config) -> MTTState:
  key_init, key_run = jax.random.split(key)
  shape = (spec.num_classes, ipc, *spec.image_shape)
  if config.init == 'real':
    keys = jax.random.split(key_init, spec.num_classes)
    real, _ = jax.vmap(lambda k, c: sample_class(k, data, c, ipc))(keys, jnp.arange(shape[0]))
    images = to_model_input(spec, whitening, real.astype(jnp.float32) / 255.0)
  else:
    images = jax.random.normal(key_init, shape, jnp.float32)
  syn_lr = jnp.asarray(config.initial_syn_lr, jnp.float32)
  image_opt, lr_opt = _optimizers(config)
  opt_state = (image_opt.init(images), lr_opt.init(syn_lr))
  return MTTState(images, syn_lr, opt_state, jnp.zeros((), jnp.int32), key_run)


def init_state(
  key: jax.Array,
  data: ClassIndexedData,
  whitening: ZCA | None,
  spec: DatasetSpec,
  ipc: int,
  config: MTTConfig,
) -> MTTState:
  """The state at iteration 0; `key` splits into the initialisation's and the run's keys.

  Raises:
    ValueError: an unusable config (`check_config`), or a class with fewer than ipc images.
  """
  check_config(config)
  check_ipc(data, ipc)
  return _init(key, data, whitening, spec, ipc, config)


def student_loss(
  images: jax.Array,
  syn_lr: jax.Array,
  start: jax.Array,
  target: jax.Array,
  key: jax.Array,
  model: ConvNet,
  unravel,
  config: MTTConfig,
) -> jax.Array:
  """The trajectory-matching loss ‖θ_N − θ*‖² / ‖θ₀ − θ*‖² of one iteration.

  Args:
    images: [K, ipc, H, W, C] synthetic images (model-input space); labels class-major.
    syn_lr: float32 [], α.
    start, target: float32 [P], the expert's θ₀ and θ* (flattened).
    key: the iteration's key for permutations and DSA.
    model: the student ConvNet; unravel: [P] → its variables.
    config: the run's.
  """
  num_classes, ipc = images.shape[:2]
  flat = images.reshape(num_classes * ipc, *images.shape[2:])
  labels = jnp.repeat(jnp.arange(num_classes), ipc)
  count = flat.shape[0]
  batch = min(config.batch_syn or count, count)
  per_permutation = -(-count // batch)
  key_order, key_augment = jax.random.split(key)
  augment = config.dsa_strategy not in ('', 'none')

  def student_step(params, s):
    order = jax.random.permutation(jax.random.fold_in(key_order, s // per_permutation), count)
    order = jnp.concatenate([order, order[: per_permutation * batch - count]])
    position = (per_permutation - 1 - s % per_permutation) * batch  # `pop()` order
    rows = lax.dynamic_slice_in_dim(order, position, batch)
    weights = (position + jnp.arange(batch) < count).astype(jnp.float32)
    x, y = flat[rows], labels[rows]
    if augment:
      x = dsa_augment(jax.random.fold_in(key_augment, s), x, config.dsa_strategy)

    def cross_entropy(p):
      log_probs = jax.nn.log_softmax(model.apply(unravel(p), x))
      losses = -jnp.take_along_axis(log_probs, y[:, None], axis=-1)[:, 0]
      return jnp.sum(losses * weights) / jnp.sum(weights)

    return params - syn_lr * jax.grad(cross_entropy)(params), None

  body = jax.checkpoint(student_step) if config.remat else student_step
  final, _ = lax.scan(body, start, jnp.arange(config.syn_steps))
  return jnp.sum(jnp.square(final - target)) / jnp.sum(jnp.square(start - target))


def step(
  state: MTTState, trajectories: jax.Array, spec: DatasetSpec, config: MTTConfig
) -> tuple[MTTState, jax.Array]:
  """One MTT iteration; returns the new state and its loss (float32 scalar).

  trajectories: float32 [E, T, P], experts' flattened parameters at epochs 0 .. T − 1.
  """
  num_classes = state.images.shape[0]
  model = ConvNet(num_classes, width=config.net_width, depth=config.net_depth)
  _, unravel = ravel_pytree(init_params(model, spec, jax.random.key(0)))
  key = jax.random.fold_in(state.key, state.iteration)
  key_expert, key_start, key_steps = jax.random.split(key, 3)
  expert = jax.random.randint(key_expert, (), 0, trajectories.shape[0])
  start_epoch = jax.random.randint(key_start, (), 0, config.max_start_epoch)
  start = trajectories[expert, start_epoch]
  target = trajectories[expert, start_epoch + config.expert_epochs]
  loss, (image_grads, lr_grad) = jax.value_and_grad(student_loss, argnums=(0, 1))(
    state.images, state.syn_lr, start, target, key_steps, model, unravel, config
  )
  image_opt, lr_opt = _optimizers(config)
  image_updates, image_state = image_opt.update(image_grads, state.opt_state[0], state.images)
  lr_update, lr_state = lr_opt.update(lr_grad, state.opt_state[1], state.syn_lr)
  new = MTTState(
    optax.apply_updates(state.images, image_updates),
    optax.apply_updates(state.syn_lr, lr_update),
    (image_state, lr_state),
    state.iteration + 1,
    state.key,
  )
  return new, loss


@functools.partial(jax.jit, static_argnames=('spec', 'config'))
def run_chunk(
  state: MTTState, stop: jax.Array, trajectories: jax.Array, spec: DatasetSpec, config: MTTConfig
) -> tuple[MTTState, jax.Array, jax.Array]:
  """Iterations `state.iteration .. stop - 1` in one `lax.while_loop`.

  Returns:
    The state at `stop`, the sum of the iterations' losses, and their count.
  """
  state, loss_sum, done = resumable.iterate_until(
    lambda state: step(state, trajectories, spec, config), state, stop
  )
  return state, loss_sum, done.astype(jnp.float32)

"""Improved Distribution Matching (IDM; Zhao et al., CVPR 2023), as its official code runs it.

IDM is DM plus three changes (uitrbn/IDM, `IDM_cifar10.py` and the commands of
its `command.txt`; see `model_queue` for the nets):

  * partition and expansion ("4-in-1", `--aug`): each stored image holds four
    half-size images in its quadrants, initialised from four independent random
    draws of real images shrunk ×0.5; the loss decodes them
    (`factorized.decode_4in1`), so a class's ipc stored images are 4·ipc
    training images;
  * the embedding net is not fresh each iteration but drawn from a queue of nets
    trained on real data for a few steps per iteration (`model_queue`);
  * class-aware regularisation (`--syn_ce`): + ce_weight · acc · CE(net(syn), c),
    acc the drawn net's training accuracy in PERCENT (torchnet's meter, 0 before
    its first training step), CE over the decoded, DSA-augmented synthetic images.

Per iteration it: reset every accuracy meter when it > 0 and it % eval_interval
== 0 (the reference resets them after each evaluation); push `net_push_num`
fresh nets when it % net_generate_interval == 0; for each of `train_net_num`
distinct nets drawn from the queue, for each class c in order: real batch,
Siamese DSA, loss_c = ‖mean embed(real) − mean embed(syn)‖² + CE term, and one SGD
step (lr 0.2, momentum 0.5) on ALL synthetic images; then train `fetch_net_num`
distinct nets of the queue. The per-class SGD steps share one momentum buffer,
so class c's images also move by momentum during the other classes' steps.
Because loss_c depends on class c's images only, those K sequential steps have a
closed form (`_class_pass`): every class's gradient is taken at the position the
sequential loop would reach, all classes in one step (`class_chunk` at a time,
see `class_chunks`), then the K momentum updates are applied in closed form. Equal to the
sequential loop up to float rounding (tested).

Official defaults per dataset and IPC: `official_config` (command.txt); other
IPCs use the IPC-10 row.

Deviations from the official code:
  * Iterations count updates of the loop: the official `range(Iteration + 1)`
    runs 20,001 (`OFFICIAL_ITERATIONS`).
  * Randomness: JAX keys (iteration i uses `fold_in(key, i)`) instead of
    time-seeded torch/numpy/`random` draws; DSA is the project's `dsa_augment`.
  * No evaluation during distillation, hence no "best synthetic set" pickle: the
    final set is written (the reference also saves the final one in `res_*.pt`).
  * Options the commands leave at their defaults and that are inactive there are
    not implemented: `mismatch_lambda` (0), `ipc == 1 and not aug` top-k real
    filtering (aug is on), `outer_loop` (1), `aug_num` (1), Adam (`optim sgd`).
  * Tiny-ImageNet: `IDM_tiny.py` initialises with whole real images, not 4-in-1
    (its `if args.aug` is inverted); `official_config` keeps that (`init='real'`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from beard_jax.data.augment import DEFAULT_STRATEGY
from beard_jax.data.specs import DatasetSpec
from beard_jax.distill import model_queue as mq
from beard_jax.distill import resumable
from beard_jax.distill.class_chunks import (
  augmented_batches,
  class_means,
  default_class_chunk,
  map_class_chunks,
)
from beard_jax.distill.dm import init_from_real, real_batch_size
from beard_jax.distill.embedding import features, features_and_logits
from beard_jax.distill.factorized import decode_4in1, encode_4in1
from beard_jax.distill.real_data import ClassIndexedData, check_ipc
from beard_jax.models.convnet import ConvNet

OFFICIAL_ITERATIONS = 20_001
INITS = ('real_4in1', 'real', 'noise')


class IDMConfig(NamedTuple):
  """IDM's hyperparameters (defaults: CIFAR-10, IPC 10 of the official commands).

  Attributes:
    learning_rate: SGD learning rate of the synthetic images (`lr_img`).
    momentum: their SGD momentum.
    batch_real: real images per class per matching step.
    dsa_strategy: DSA ops, 'none' for none.
    factorized: 4-in-1 images (`--aug`).
    init: `real_4in1` (four shrunk real images per stored image), `real` (one
      whole real image) or `noise`.
    ce_weight: weight of the class-aware CE term (`--syn_ce`); 0 disables it.
    net_num: queue capacity.
    net_generate_interval: iterations between pushes of fresh nets.
    net_push_num: nets pushed each time.
    train_net_num: queue nets the synthetic set is matched with per iteration.
    fetch_net_num: queue nets trained per iteration.
    model_train_steps: SGD steps per trained net per iteration.
    trained_bs: real images per such step.
    lr_net: their learning rate.
    net_momentum: their momentum.
    net_weight_decay: their (coupled) weight decay (`--net_decay`).
    eval_interval: iterations between resets of the accuracy meters.
    net_width: ConvNet width.
    net_depth: ConvNet depth.
    class_chunk: classes embedded together (0: `class_chunks.default_class_chunk`).
  """

  learning_rate: float = 0.2
  momentum: float = 0.5
  batch_real: int = 256
  dsa_strategy: str = DEFAULT_STRATEGY
  factorized: bool = True
  init: str = 'real_4in1'
  ce_weight: float = 0.5
  net_num: int = 100
  net_generate_interval: int = 30
  net_push_num: int = 1
  train_net_num: int = 1
  fetch_net_num: int = 2
  model_train_steps: int = 10
  trained_bs: int = 256
  lr_net: float = 0.01
  net_momentum: float = 0.9
  net_weight_decay: float = 5e-4
  eval_interval: int = 100
  net_width: int = 128
  net_depth: int = 3
  class_chunk: int = 0


# command.txt, per (dataset, IPC): the fields that differ from IDMConfig()'s.
_OFFICIAL_OVERRIDES = {
  ('cifar10', 1): dict(batch_real=5000, net_generate_interval=5),
  ('cifar10', 10): {},
  ('cifar10', 50): dict(ce_weight=0.1, eval_interval=500),
  ('cifar100', 1): dict(batch_real=5000, net_generate_interval=5),
  ('cifar100', 10): dict(ce_weight=0.1, model_train_steps=50),
  ('cifar100', 50): dict(ce_weight=0.1, eval_interval=500),
  ('tinyimagenet', 1): dict(init='real'),
  ('tinyimagenet', 10): dict(init='real', eval_interval=500),
  ('tinyimagenet', 50): dict(init='real', ce_weight=0.8, eval_interval=1000, model_train_steps=50),
}


def official_config(dataset: str, ipc: int) -> IDMConfig:
  """The official command's hyperparameters for `dataset` (canonical name) and `ipc`."""
  row = ipc if ipc in (1, 10, 50) else 10
  return IDMConfig()._replace(**_OFFICIAL_OVERRIDES.get((dataset, row), {}))


class IDMState(NamedTuple):
  """Everything an IDM run needs to continue.

  Attributes:
    images: [K, ipc, H, W, C] float32, the stored (4-in-1) synthetic images, normalised.
    momentum: their SGD momentum buffer, same shape.
    queue: the nets (`model_queue.NetQueue`).
    iteration: int32 [], iterations done.
    key: the run's `jax.random` key; iteration i uses `fold_in(key, i)`.
  """

  images: jax.Array
  momentum: jax.Array
  queue: mq.NetQueue
  iteration: jax.Array
  key: jax.Array


def _model(spec: DatasetSpec, config: IDMConfig) -> ConvNet:
  return ConvNet(spec.num_classes, width=config.net_width, depth=config.net_depth)


def _net_optimizer(config: IDMConfig):
  return mq.net_optimizer(config.lr_net, config.net_momentum, config.net_weight_decay)


def check_config(config: IDMConfig, data: ClassIndexedData) -> None:
  """Raises ValueError for settings the loop cannot run."""
  if config.init not in INITS:
    raise ValueError(f'unknown init {config.init!r}; choose from {INITS}')
  smallest_queue = mq.INITIAL_NETS + config.net_push_num
  for name in ('train_net_num', 'fetch_net_num'):
    if not 1 <= getattr(config, name) <= min(config.net_num, smallest_queue):
      raise ValueError(f'{name} must lie in [1, {min(config.net_num, smallest_queue)}]')
  total = int(jnp.sum(data.counts))
  if config.trained_bs > total:
    raise ValueError(f'trained_bs {config.trained_bs} exceeds the {total} real images')


def init_state(
  key: jax.Array, data: ClassIndexedData, spec: DatasetSpec, ipc: int, config: IDMConfig
) -> IDMState:
  """The state at iteration 0 (images and the queue's first nets from `key`).

  Raises:
    ValueError: settings the loop cannot run (`check_config`), or a class with
      fewer than ipc real images.
  """
  check_config(config, data)
  check_ipc(data, ipc)
  return _init_state(key, data, spec, ipc, config)


@functools.partial(jax.jit, static_argnames=('spec', 'ipc', 'config'))
def _init_state(key, data, spec, ipc, config):
  key_images, key_queue, key_run = jax.random.split(key, 3)
  if config.init == 'real_4in1':
    draws = [init_from_real(k, data, spec, ipc) for k in jax.random.split(key_images, 4)]
    images = jax.vmap(encode_4in1, in_axes=1, out_axes=0)(jnp.stack(draws))
  elif config.init == 'real':
    images = init_from_real(key_images, data, spec, ipc)
  else:
    images = jax.random.normal(key_images, (spec.num_classes, ipc, *spec.image_shape), jnp.float32)
  queue = mq.init_queue(
    key_queue, config.net_num, _model(spec, config), spec, _net_optimizer(config)
  )
  return IDMState(images, jnp.zeros_like(images), queue, jnp.zeros((), jnp.int32), key_run)


def mean_squared_distance(real: jax.Array, valid: jax.Array, syn: jax.Array) -> jax.Array:
  """IDM's (and DM's) matching term ‖mean real_c − mean syn_c‖² per class.

  Args:
    real: [C·n, F] real embeddings, class-major; valid: bool [C, n] (padding False).
    syn: [C·m, F] synthetic embeddings, class-major.

  Returns:
    float32 [C]; the real side is not differentiated.
  """
  num_classes = valid.shape[0]
  real_mean = lax.stop_gradient(class_means(real, num_classes, valid))
  return jnp.sum(jnp.square(real_mean - class_means(syn, num_classes)), axis=-1)


# matching(real [C·n, F], valid [C, n], syn [C·m, F]) -> [C]: the distribution-matching term.
Matching = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def classes_loss(
  syn,
  labels,
  keys,
  params,
  acc_weight,
  data: ClassIndexedData,
  spec: DatasetSpec,
  config: IDMConfig,
  matching: Matching = mean_squared_distance,
) -> jax.Array:
  """loss_c = matching_c + ce_weight·acc·CE_c for C classes (IDM's matching:
  ‖mean embed(real_c) − mean embed(syn_c)‖²; BACON's: `bacon.bayesian_distance`).

  Args:
    syn: [C, ipc, H, W, Ch] the classes' stored images (normalised; 4-in-1 if factorized).
    labels: int32 [C] the classes.
    keys: [C] keys of the (net, class) pairs: real draw and the shared DSA draw.
    params: the matching net's variables.
    acc_weight: float32 scalar, that net's accuracy meter in percent.
    data, spec, config: the run's.
    matching: the distribution-matching term (static).

  Returns:
    float32 [C]; loss c depends on syn[c] only.
  """
  model = _model(spec, config)
  num_classes = labels.shape[0]
  if config.factorized:
    syn = jax.vmap(decode_4in1)(syn)
  real_batch = real_batch_size(data, config.batch_real)
  real, syn, valid = augmented_batches(
    keys, labels, syn, data, spec, real_batch, config.dsa_strategy
  )
  syn_features, logits = features_and_logits(model, params, syn)
  loss = matching(features(model, params, real), valid.reshape(num_classes, -1), syn_features)
  if config.ce_weight:
    targets = jnp.repeat(labels, logits.shape[0] // num_classes)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    loss = loss + config.ce_weight * acc_weight * jnp.mean(ce.reshape(num_classes, -1), axis=1)
  return loss


def _class_pass(images, momentum, losses_and_grads, keys, config: IDMConfig, chunk: int):
  """K sequential per-class SGD steps (momentum m, lr η) in closed form.

  Before its own step, class c's images have taken c momentum-only steps:
  x ← x − η·(m + … + m^c)·b, b ← m^c·b; its step: b ← m·b + g_c, x ← x − η·b; then
  K−1−c more momentum-only steps. g_c is taken at the pre-step position.
  `losses_and_grads((syn [C, ...], labels [C], keys [C])) -> (losses [C], grads [C, ...])`.
  """
  num_classes = images.shape[0]
  m, lr = config.momentum, config.learning_rate
  powers = m ** np.arange(num_classes + 1, dtype=np.float64)
  partial = np.concatenate([[0.0], np.cumsum(powers[1:])])  # partial[j] = m + … + m^j.

  def per_class_constant(values):
    return jnp.asarray(values, jnp.float32).reshape((num_classes,) + (1,) * (images.ndim - 1))

  before, after = per_class_constant(partial[:num_classes]), per_class_constant(partial[::-1][1:])
  decay_before = per_class_constant(powers[:num_classes])
  decay_after = per_class_constant(powers[num_classes - 1 :: -1])
  at_step = images - lr * before * momentum
  labels = jnp.arange(num_classes, dtype=jnp.int32)
  losses, grads = map_class_chunks(losses_and_grads, (at_step, labels, keys), chunk)
  momentum = m * decay_before * momentum + grads
  images = at_step - lr * momentum - lr * after * momentum
  return images, decay_after * momentum, jnp.sum(losses)


def _parallel_nets() -> bool:
  """Train queue nets side by side (vmap) except on XLA:CPU, where grouped convs are slow."""
  return jax.default_backend() != 'cpu'


def step(
  state: IDMState,
  data: ClassIndexedData,
  spec: DatasetSpec,
  config: IDMConfig,
  matching: Matching = mean_squared_distance,
) -> tuple[IDMState, jax.Array]:
  """One IDM (or, with BACON's `matching`, BACON) iteration; returns the new state and the
  summed per-(net, class) losses."""
  model, optimizer = _model(spec, config), _net_optimizer(config)
  num_classes = state.images.shape[0]
  key_push, key_match, key_classes, key_train = jax.random.split(
    jax.random.fold_in(state.key, state.iteration), 4
  )
  queue = state.queue
  reset = (state.iteration > 0) & (state.iteration % config.eval_interval == 0)
  queue = lax.cond(reset, mq.reset_meters, lambda q: q, queue)
  pushing = state.iteration % config.net_generate_interval == 0
  for key_net in jax.random.split(key_push, config.net_push_num):
    push = functools.partial(mq.push, key=key_net, model=model, spec=spec, optimizer=optimizer)
    queue = lax.cond(pushing, push, lambda q: q, queue)
  chunk = config.class_chunk or default_class_chunk(
    num_classes, real_batch_size(data, config.batch_real), spec.image_size
  )
  images, momentum, loss_sum = state.images, state.momentum, jnp.zeros((), jnp.float32)
  for index, slot in enumerate(mq.draw_slots(queue, key_match, config.train_net_num)):
    params, acc_weight = mq.get_net(queue, slot), mq.accuracy_percent(queue, slot)

    def losses_and_grads(chunk_args, params=params, acc_weight=acc_weight):
      syn, labels, keys = chunk_args

      def total(syn):
        losses = classes_loss(syn, labels, keys, params, acc_weight, data, spec, config, matching)
        return jnp.sum(losses), losses

      grads, losses = jax.grad(total, has_aux=True)(syn)
      return losses, grads

    key_net = jax.random.fold_in(key_classes, index)
    keys = jax.vmap(lambda c, k=key_net: jax.random.fold_in(k, c))(jnp.arange(num_classes))
    images, momentum, losses = _class_pass(images, momentum, losses_and_grads, keys, config, chunk)
    loss_sum = loss_sum + losses
  train_fn = functools.partial(
    mq.train_on_real,
    data=data,
    spec=spec,
    model=model,
    optimizer=optimizer,
    steps=config.model_train_steps,
    batch_size=config.trained_bs,
  )
  key_slots, key_steps = jax.random.split(key_train)
  slots = mq.draw_slots(queue, key_slots, config.fetch_net_num)
  keys = jax.random.split(key_steps, config.fetch_net_num)
  queue = mq.train_slots(queue, slots, keys, train_fn, _parallel_nets())
  return IDMState(images, momentum, queue, state.iteration + 1, state.key), loss_sum


@functools.partial(jax.jit, static_argnames=('spec', 'config', 'matching'))
def run_chunk(
  state: IDMState,
  stop: jax.Array,
  data: ClassIndexedData,
  spec: DatasetSpec,
  config: IDMConfig,
  matching: Matching = mean_squared_distance,
) -> tuple[IDMState, jax.Array, jax.Array]:
  """Iterations `state.iteration .. stop - 1` in one `lax.while_loop`.

  Returns:
    The state at `stop`, the summed losses, and the count to divide by for the mean
    loss per class (iterations × train_net_num × K; the reference prints Σ/K).
  """

  state, loss_sum, done = resumable.iterate_until(
    lambda state: step(state, data, spec, config, matching), state, stop
  )
  return state, loss_sum, (done * config.train_net_num * state.images.shape[0]).astype(jnp.float32)


def finalize(state: IDMState) -> jax.Array:
  """The stored synthetic images [K·ipc, H, W, C], class-major (4-in-1 when factorized)."""
  return state.images.reshape(-1, *state.images.shape[2:])

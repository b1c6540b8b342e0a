"""Dataset Condensation (DC; Zhao, Mopuri & Bilen, ICLR 2021) and DSA (Zhao & Bilen, ICML
2021), as their official code (VICO-UoE/DatasetCondensation `main.py`) runs them.

Every iteration:

  1. a freshly, randomly initialised ConvNet (PyTorch's default init) and a plain SGD
     optimiser for it (lr `net_learning_rate`, no momentum);
  2. `outer_loop` times (`official_loops(ipc)`):
     a. for every class c: n = `batch_real` random real images of c and the class's
        `ipc` synthetic images (DSA: both augmented with one shared draw); the
        gradients of the mean cross-entropy on each batch w.r.t. the network's
        parameters (the real one not differentiated further) and their layer-wise
        distance `match_distance`; loss = Σ_c distance;
     b. one SGD step (lr `learning_rate`, momentum 0.5) on the synthetic images,
        through the second-order gradient of the synthetic side;
     c. unless it was the last outer step, `inner_loop` epochs of training the network
        on the synthetic set (shuffled, batches of `batch_train`; DSA augments each
        batch with its own draw, DC does not augment).

Synthetic images start as random real images of their class (`init='real'`, the DSA
command's) or N(0, 1) noise (the code's default, which DC's command keeps), in
mean/std-normalised space; labels are class-major. DC is DSA with `dsa_strategy='none'`
(and no augmentation in the inner loop; DSA's inner loop draws its own parameters per
image, not Siamese); `official_config` gives each method's settings.

Here all classes are matched in one jitted step: each class's distance and its
gradient (which touches only that class's images) are computed `class_chunk` classes
at a time (vmapped within a chunk, `class_chunks`).

Deviations from the official code:
  * Iterations: the official loop `for it in range(Iteration + 1)` with Iteration 1000
    performs 1,001 updates rounds; `OFFICIAL_ITERATIONS` = 1001.
  * Randomness: JAX keys; iteration i uses only `fold_in(key, i)` (resumable bit for bit).
  * DSA: the project's `dsa_augment` (same ops, magnitudes and shared draws); its
    random streams differ from torch's.
  * No evaluation during distillation; the network is `models/convnet.py`'s ConvNet
    (instance norm, so the official BatchNorm branch never applies).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from beard_jax.data.augment import DEFAULT_STRATEGY, dsa_augment
from beard_jax.data.specs import DatasetSpec
from beard_jax.distill import resumable
from beard_jax.distill.class_chunks import augmented_batches, default_class_chunk, map_class_chunks
from beard_jax.distill.dm import DMState, image_optimizer, init_image_state
from beard_jax.distill.real_data import ClassIndexedData, check_ipc
from beard_jax.models.convnet import ConvNet, init_params

OFFICIAL_ITERATIONS = 1001
INITS = ('real', 'noise')
# utils.get_loops: ipc → (outer_loop, inner_loop).
_OFFICIAL_LOOPS = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}


class DCConfig(NamedTuple):
  """DC's and DSA's hyperparameters (official defaults: `official_config`).

  Attributes:
    learning_rate: SGD learning rate of the synthetic images (`lr_img`).
    momentum: their SGD momentum.
    net_learning_rate: the network's SGD learning rate in the inner loop (`lr_net`).
    batch_real: real images per class per matching step.
    batch_train: synthetic images per inner-loop training step.
    outer_loop: matching steps per iteration; 0 = `official_loops(ipc)`.
    inner_loop: network epochs on the synthetic set between them; 0 = official.
    dsa_strategy: DSA ops for matching and inner training; 'none' is DC.
    init: `real` (random real images of the class) or `noise` (N(0, 1)).
    net_width: ConvNet width.
    net_depth: ConvNet depth.
    class_chunk: classes matched together (memory ↔ speed); 0 = `default_class_chunk`.
  """

  learning_rate: float = 0.1
  momentum: float = 0.5
  net_learning_rate: float = 0.01
  batch_real: int = 256
  batch_train: int = 256
  outer_loop: int = 0
  inner_loop: int = 0
  dsa_strategy: str = 'none'
  init: str = 'real'
  net_width: int = 128
  net_depth: int = 3
  class_chunk: int = 0


DCState = DMState  # images [K, ipc, H, W, C] normalised, their SGD state, iteration, key.


def official_loops(ipc: int) -> tuple[int, int]:
  """(outer_loop, inner_loop) of the official `get_loops(ipc)`.

  Raises:
    ValueError: an IPC the official table does not list (give both loops explicitly).
  """
  if ipc not in _OFFICIAL_LOOPS:
    raise ValueError(
      f'the official DC/DSA code defines loops for IPC {sorted(_OFFICIAL_LOOPS)}, not {ipc}; '
      'set outer_loop and inner_loop'
    )
  return _OFFICIAL_LOOPS[ipc]


def official_config(method: str, dataset: str, ipc: int) -> DCConfig:
  """The official commands' settings (DC-bench runs them unchanged): DC with the code's
  defaults (noise init, no DSA); DSA with `--init real --dsa_strategy
  color_crop_cutout_flip_scale_rotate`. Both: lr_img 0.1, lr_net 0.01, batch 256."""
  del dataset, ipc  # The same for every dataset; the loops resolve per IPC at run time.
  if method == 'dsa':
    return DCConfig(dsa_strategy=DEFAULT_STRATEGY, init='real')
  return DCConfig(dsa_strategy='none', init='noise')


def _loops(config: DCConfig, ipc: int) -> tuple[int, int]:
  if config.outer_loop and config.inner_loop:
    return config.outer_loop, config.inner_loop
  outer, inner = official_loops(ipc)
  return config.outer_loop or outer, config.inner_loop or inner


def match_distance(real_grads, syn_grads) -> jax.Array:
  """The official `match_loss` (`dis_metric='ours'`): Σ over layers and output units of
  1 − cos(real, syn), each unit's gradient row flattened; 1-D leaves (biases, norm
  scales) count 0, as `distance_wb` returns 0 for them.

  Flax keeps the output axis last (conv HWIO, dense [in, out]); rows are per output unit,
  as PyTorch's OIHW/[out, in] rows are.
  """

  def layer(real, syn):
    if real.ndim < 2:
      return jnp.zeros((), jnp.float32)
    real = jnp.moveaxis(real, -1, 0).reshape(real.shape[-1], -1)
    syn = jnp.moveaxis(syn, -1, 0).reshape(syn.shape[-1], -1)
    cosine = jnp.sum(real * syn, -1) / (
      jnp.linalg.norm(real, axis=-1) * jnp.linalg.norm(syn, axis=-1) + 1e-6
    )
    return jnp.sum(1.0 - cosine)

  return sum(jax.tree.leaves(jax.tree.map(layer, real_grads, syn_grads)))


def _cross_entropy(model: ConvNet, params, images: jax.Array, label: jax.Array, weights=None):
  """Mean cross-entropy of `images` (all of class `label`), over `weights` when given."""
  logits = model.apply(params, images)
  losses = -jax.nn.log_softmax(logits)[:, label]
  if weights is None:
    return jnp.mean(losses)
  return jnp.sum(losses * weights) / jnp.sum(weights)


def classes_distance(
  syn: jax.Array,
  labels: jax.Array,
  keys: jax.Array,
  params,
  model: ConvNet,
  data: ClassIndexedData,
  spec: DatasetSpec,
  config: DCConfig,
) -> jax.Array:
  """float32 [C]: the gradient-matching distance of each class of a chunk.

  Args:
    syn: [C, ipc, H, W, Ch] the classes' synthetic images, normalised.
    labels: int32 [C] the classes.
    keys: [C] keys (real draw and the shared DSA draw of each class).
    params: the network's current variables.
    model, data, spec, config: the run's.
  """
  n = min(config.batch_real, data.images.shape[1])
  real, syn_aug, valid = augmented_batches(keys, labels, syn, data, spec, n, config.dsa_strategy)
  real = real.reshape(labels.shape[0], n, *real.shape[1:])
  syn_aug = syn_aug.reshape(syn.shape)

  def one(real_c, syn_c, label, valid_c):
    weights = valid_c.astype(jnp.float32)
    real_grads = jax.grad(lambda p: _cross_entropy(model, p, real_c, label, weights))(params)
    syn_grads = jax.grad(lambda p: _cross_entropy(model, p, syn_c, label))(params)
    return match_distance(lax.stop_gradient(real_grads), syn_grads)

  return jax.vmap(one)(real, syn_aug, labels, valid)


def init_state(
  key: jax.Array, data: ClassIndexedData, spec: DatasetSpec, ipc: int, config: DCConfig
) -> DCState:
  """The state at iteration 0; `key` splits into the initialisation's and the run's keys.

  Raises:
    ValueError: an unknown `init`, a class with fewer than ipc real images, or an IPC
      without official loops when the config does not set them.
  """
  if config.init not in INITS:
    raise ValueError(f'unknown init {config.init!r}; choose from {INITS}')
  check_ipc(data, ipc)
  _loops(config, ipc)
  return init_image_state(key, data, spec, ipc, config)


def _train_on_syn(key, params, model, images, config: DCConfig, inner_loop: int):
  """`inner_loop` epochs of plain SGD on the synthetic set (class-major labels)."""
  num_classes, ipc = images.shape[:2]
  flat = images.reshape(num_classes * ipc, *images.shape[2:])
  labels = jnp.repeat(jnp.arange(num_classes), ipc)
  count = flat.shape[0]
  batch = min(config.batch_train, count)
  steps = -(-count // batch)

  def loss_fn(p, x, y, weights):
    logits = model.apply(p, x)
    losses = -jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=-1)[:, 0]
    return jnp.sum(losses * weights) / jnp.sum(weights)

  def epoch(e, params):
    key_order, key_augment = jax.random.split(jax.random.fold_in(key, e))
    order = jax.random.permutation(key_order, count)
    order = jnp.concatenate([order, order[: steps * batch - count]])  # Pad the last batch.

    def step(b, params):
      rows = lax.dynamic_slice_in_dim(order, b * batch, batch)
      x, y = flat[rows], labels[rows]
      if config.dsa_strategy not in ('', 'none', 'None'):
        x = dsa_augment(jax.random.fold_in(key_augment, b), x, config.dsa_strategy)
      weights = (b * batch + jnp.arange(batch) < count).astype(jnp.float32)  # Padding: 0.
      grads = jax.grad(loss_fn)(params, x, y, weights)
      return jax.tree.map(lambda p, g: p - config.net_learning_rate * g, params, grads)

    return lax.fori_loop(0, steps, step, params)

  return lax.fori_loop(0, inner_loop, epoch, params)


def step(
  state: DCState, data: ClassIndexedData, spec: DatasetSpec, config: DCConfig
) -> tuple[DCState, jax.Array]:
  """One DC/DSA iteration (all outer steps); returns the new state and the sum over outer
  steps of Σ_c distance_c (the official `loss_avg` before its division)."""
  num_classes, ipc = state.images.shape[:2]
  outer_loop, inner_loop = _loops(config, ipc)
  model = ConvNet(num_classes, width=config.net_width, depth=config.net_depth)
  key = jax.random.fold_in(state.key, state.iteration)
  key_net, key_steps = jax.random.split(key)
  labels = jnp.arange(num_classes, dtype=jnp.int32)
  chunk = config.class_chunk or default_class_chunk(
    num_classes, min(config.batch_real, data.images.shape[1]), spec.image_size
  )
  optimizer = image_optimizer(config)

  def outer(ol, carry):
    params, images, opt_state, loss_sum = carry
    key_classes, key_inner = jax.random.split(jax.random.fold_in(key_steps, ol))
    keys = jax.vmap(lambda c: jax.random.fold_in(key_classes, c))(labels)

    def chunk_losses_and_grads(part):
      syn, chunk_labels, chunk_keys = part

      def total(syn):
        distances = classes_distance(syn, chunk_labels, chunk_keys, params, model, data, spec,
                                     config)  # fmt: skip
        return jnp.sum(distances), distances

      grads, distances = jax.grad(total, has_aux=True)(syn)
      return distances, grads

    distances, grads = map_class_chunks(chunk_losses_and_grads, (images, labels, keys), chunk)
    updates, opt_state = optimizer.update(grads, opt_state, images)
    images = optax.apply_updates(images, updates)
    params = lax.cond(
      ol < outer_loop - 1,
      lambda p: _train_on_syn(key_inner, p, model, images, config, inner_loop),
      lambda p: p,
      params,
    )
    return params, images, opt_state, loss_sum + jnp.sum(distances)

  params = init_params(model, spec, key_net)
  carry = (params, state.images, state.opt_state, jnp.zeros((), jnp.float32))
  _, images, opt_state, loss_sum = lax.fori_loop(0, outer_loop, outer, carry)
  return DCState(images, opt_state, state.iteration + 1, state.key), loss_sum


@functools.partial(jax.jit, static_argnames=('spec', 'config'))
def run_chunk(
  state: DCState, stop: jax.Array, data: ClassIndexedData, spec: DatasetSpec, config: DCConfig
) -> tuple[DCState, jax.Array, jax.Array]:
  """Iterations `state.iteration .. stop - 1` in one `lax.while_loop`.

  Returns:
    The state at `stop`, the sum of the per-iteration losses, and the count to divide it
    by (iterations × K × outer_loop) for the mean distance per class and outer step.
  """
  outer_loop, _ = _loops(config, state.images.shape[1])

  state, loss_sum, done = resumable.iterate_until(
    lambda state: step(state, data, spec, config), state, stop
  )
  return state, loss_sum, (done * state.images.shape[0] * outer_loop).astype(jnp.float32)

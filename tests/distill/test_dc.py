"""DC and DSA: the layer-wise gradient distance, the official loops, matching that decreases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from beard_jax.data.specs import get_dataset_spec
from beard_jax.distill import dc, real_data
from beard_jax.models.convnet import ConvNet, init_params

SPEC = get_dataset_spec('cifar10')


def test_the_distance_is_one_minus_cosine_per_output_unit_and_ignores_1d_leaves():
  rng = np.random.default_rng(0)
  conv_r, conv_s = rng.normal(size=(2, 3, 3, 4, 5))  # Flax HWIO: 5 output channels.
  dense_r, dense_s = rng.normal(size=(2, 7, 3))  # Flax [in, out]: 3 output units.
  real = {'conv': conv_r, 'dense': dense_r, 'bias': rng.normal(size=5)}
  syn = {'conv': conv_s, 'dense': dense_s, 'bias': rng.normal(size=5)}

  def rows_distance(r, s):  # PyTorch's rows: one per output unit, the rest flattened.
    return sum(
      1 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-6) for a, b in zip(r, s, strict=True)
    )

  expected = rows_distance(conv_r.reshape(-1, 5).T, conv_s.reshape(-1, 5).T) + rows_distance(
    dense_r.T, dense_s.T
  )
  assert float(dc.match_distance(real, syn)) == pytest.approx(expected, rel=1e-5)
  assert float(dc.match_distance(real, real)) == pytest.approx(0.0, abs=1e-5)
  assert float(dc.match_distance(real, {**real, 'bias': -real['bias']})) == pytest.approx(
    0, abs=1e-5
  )


def test_official_loops_and_settings():
  assert [dc.official_loops(ipc) for ipc in (1, 10, 50)] == [(1, 1), (10, 50), (50, 10)]
  with pytest.raises(ValueError, match='loops for IPC'):
    dc.official_loops(7)
  assert dc.official_config('dc', 'cifar10', 10)[:3] == (0.1, 0.5, 0.01)
  assert (
    dc.official_config('dc', 'cifar10', 1).init,
    dc.official_config('dc', 'x', 1).dsa_strategy,
  ) == ('noise', 'none')
  dsa = dc.official_config('dsa', 'cifar10', 1)
  assert (dsa.init, dsa.dsa_strategy) == ('real', 'color_crop_cutout_flip_scale_rotate')


# With DSA the same loss and gradients run on augmented batches: slow set.
@pytest.mark.parametrize('strategy', ['none', pytest.param('crop_flip', marks=pytest.mark.slow)])
def test_matching_a_fixed_network_lowers_the_distance(real_data_path, strategy):
  with np.load(real_data_path('cifar10/train_1k_per_class.npz')) as archive:
    images, labels = archive['images'], archive['labels']
  index = np.concatenate([np.flatnonzero(labels == c)[:8] for c in range(10)])
  data = real_data.index_by_class(images[index], labels[index], 10)
  config = dc.DCConfig(
    net_width=8, net_depth=1, batch_real=8, dsa_strategy=strategy, outer_loop=1, inner_loop=1
  )
  model = ConvNet(10, width=8, depth=1)
  params = init_params(model, SPEC, jax.random.key(1))
  syn = dc.init_state(jax.random.key(0), data, SPEC, 2, config._replace(init='noise')).images
  classes = jnp.arange(10, dtype=jnp.int32)
  keys = jax.vmap(lambda c: jax.random.fold_in(jax.random.key(2), c))(classes)

  @jax.jit
  def loss_and_grad(syn):
    return jax.value_and_grad(
      lambda s: jnp.sum(dc.classes_distance(s, classes, keys, params, model, data, SPEC, config))
    )(syn)

  losses = []
  for _ in range(30):
    loss, grad = loss_and_grad(syn)
    losses.append(float(loss))
    syn = syn - 1.0 * grad
  assert losses[-1] < 0.8 * losses[0], losses

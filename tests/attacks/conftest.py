"""Fixtures for attack property tests: a small random ConvNet, BEARD's DSA model, real images."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from beard_jax.data.specs import get_dataset_spec
from beard_jax.models import ConvNet, init_params, make_apply_fn
from beard_jax.models.torch_import import load_torch_convnet

CHECKPOINT = 'beard_model_pool/DSA_ConvNet_CIFAR10_50_None_0.6048.pth'


@pytest.fixture(scope='session')
def cifar_images(real_data_path):
  """The first 48 CIFAR-10 test images: x [48, 32, 32, 3] float32 in [0, 1], y [48] int32."""
  data = np.load(real_data_path('cifar10/test.npz'))
  x = jnp.asarray(data['images'][:48], jnp.float32) / 255.0
  y = jnp.asarray(data['labels'][:48], jnp.int32)
  return x, y


@pytest.fixture(scope='session')
def small_model():
  """A random ConvNet(10, width=16) on [0, 1] pixels: (apply_fn, params)."""
  spec = get_dataset_spec('cifar10')
  model = ConvNet(10, width=16)
  return make_apply_fn(model, spec, 'pixels'), init_params(model, spec, jax.random.key(0))


@pytest.fixture(scope='session')
def beard_model(real_data_path):
  """BEARD's DSA checkpoint on [0, 1] pixels: (apply_fn, params)."""
  spec = get_dataset_spec('cifar10')
  model = ConvNet(10)
  params = load_torch_convnet(real_data_path(CHECKPOINT), model, spec.image_size)
  return make_apply_fn(model, spec, 'pixels'), params

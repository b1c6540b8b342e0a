"""The ConvNet's architecture and BEARD's published checkpoints."""

import glob

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from beard_jax.data.specs import get_dataset_spec
from beard_jax.models import ConvNet, init_params, make_apply_fn
from beard_jax.models.torch_import import (
  CheckpointMismatchError,
  convert_state_dict,
  load_torch_convnet,
  parse_beard_checkpoint_name,
)

# PROTOCOL.md §2.
PUBLISHED_PARAMETER_COUNTS = {'cifar10': 320_010, 'cifar100': 504_420, 'tinyimagenet': 1_938_120}
# ../shared/data/README.md: clean CIFAR-10 test accuracy of BEARD's six checkpoints.
PUBLISHED_ACCURACIES = {
  'BACON': 69.95,
  'DC': 54.31,
  'DM': 62.06,
  'DSA': 60.48,
  'IDM': 66.91,
  'MTT': 69.66,
}


@pytest.mark.parametrize('dataset', sorted(PUBLISHED_PARAMETER_COUNTS))
def test_parameter_count_matches_protocol(dataset):
  spec = get_dataset_spec(dataset)
  params = init_params(ConvNet(spec.num_classes), spec, jax.random.key(0))
  count = sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))
  assert count == PUBLISHED_PARAMETER_COUNTS[dataset]


def test_pixel_apply_fn_equals_normalised_apply_fn():
  spec = get_dataset_spec('cifar10')
  model = ConvNet(10, width=8)
  params = init_params(model, spec, jax.random.key(1))
  x = jax.random.uniform(jax.random.key(2), (4, 32, 32, 3))
  normalised = (x - jnp.asarray(spec.mean)) / jnp.asarray(spec.std)
  np.testing.assert_allclose(
    make_apply_fn(model, spec, 'pixels')(params, x),
    make_apply_fn(model, spec, 'normalized')(params, normalised),
    rtol=1e-5,
    atol=1e-5,
  )
  with pytest.raises(ValueError, match='input_space'):
    make_apply_fn(model, spec, 'rgb')


def test_state_dict_round_trip_orders_axes_like_pytorch():
  """A hand-built state_dict: the classifier must read features in C, H, W order."""
  model = ConvNet(3, width=2, depth=1)
  rng = np.random.default_rng(0)
  state = {
    'features.0.weight': rng.normal(size=(2, 3, 3, 3)).astype(np.float32),
    'features.0.bias': rng.normal(size=2).astype(np.float32),
    'features.1.weight': np.ones(2, np.float32),
    'features.1.bias': np.zeros(2, np.float32),
    'classifier.weight': rng.normal(size=(3, 2 * 2 * 2)).astype(np.float32),
    'classifier.bias': rng.normal(size=3).astype(np.float32),
  }
  params = convert_state_dict(state, model, image_size=4)
  np.testing.assert_array_equal(
    params['params']['conv0']['kernel'][:, :, 1, 0], state['features.0.weight'][0, 1]
  )
  # Feature map after the block is [1, 2, 2, C=2]; PyTorch flattens [C, H, W].
  features = jnp.arange(8.0).reshape(1, 2, 2, 2)
  torch_order = np.transpose(np.asarray(features), (0, 3, 1, 2)).reshape(1, -1)
  expected = torch_order @ state['classifier.weight'].T + state['classifier.bias']
  kernel = params['params']['classifier']['kernel']
  flat = jnp.transpose(features, (0, 3, 1, 2)).reshape(1, -1)
  np.testing.assert_allclose(
    flat @ kernel + params['params']['classifier']['bias'], expected, rtol=1e-5
  )


def test_mismatched_state_dicts_are_refused():
  model = ConvNet(10)
  good = {
    k: np.zeros(s, np.float32)
    for k, s in {
      'features.0.weight': (128, 3, 3, 3),
      'features.0.bias': (128,),
      'features.1.weight': (128,),
      'features.1.bias': (128,),
      'features.4.weight': (128, 128, 3, 3),
      'features.4.bias': (128,),
      'features.5.weight': (128,),
      'features.5.bias': (128,),
      'features.8.weight': (128, 128, 3, 3),
      'features.8.bias': (128,),
      'features.9.weight': (128,),
      'features.9.bias': (128,),
      'classifier.weight': (10, 2048),
      'classifier.bias': (10,),
    }.items()
  }
  convert_state_dict(good, model, 32)
  with pytest.raises(CheckpointMismatchError, match='missing'):
    convert_state_dict({k: v for k, v in good.items() if k != 'classifier.bias'}, model, 32)
  with pytest.raises(CheckpointMismatchError, match=r'expected shape \(10, 2048\)'):
    convert_state_dict(dict(good, **{'classifier.weight': np.zeros((10, 8192))}), model, 32)
  with pytest.raises(CheckpointMismatchError, match='NaN'):
    convert_state_dict(dict(good, **{'features.0.bias': np.full(128, np.nan)}), model, 32)
  # A CIFAR-10 checkpoint is not a Tiny-ImageNet model.
  with pytest.raises(CheckpointMismatchError, match='8192'):
    convert_state_dict(good, model, 64)


def test_beard_checkpoint_names_parse():
  assert parse_beard_checkpoint_name('x/DSA_ConvNet_CIFAR10_50_None_0.6048.pth') == {
    'method': 'DSA',
    'dataset': 'CIFAR10',
    'ipc': 50,
    'tag': 'None',
    'recorded_acc': 0.6048,
  }
  assert parse_beard_checkpoint_name('DC_ConvNet_CIFAR10_50_None.pth')['recorded_acc'] is None
  with pytest.raises(ValueError, match='BEARD model-pool name'):
    parse_beard_checkpoint_name('model.pth')


# Every checkpoint goes through the same import; the default run checks the lowest and the
# highest scoring one (10,000 test images each), the slow run all six.
_CHECKPOINT_CASES = [
  name if name in ('BACON', 'DC') else pytest.param(name, marks=pytest.mark.slow)
  for name in sorted(PUBLISHED_ACCURACIES)
]


@pytest.mark.parametrize('method', _CHECKPOINT_CASES)
def test_published_checkpoints_score_published_accuracies(method, real_data_path):
  """A BEARD checkpoint on the full CIFAR-10 test set, to two decimals."""
  (path,) = glob.glob(str(real_data_path('beard_model_pool') / f'{method}_ConvNet_CIFAR10_*.pth'))
  test = np.load(real_data_path('cifar10/test.npz'))
  images = test['images'].astype(np.float32) / 255.0
  labels = test['labels'].astype(np.int32)
  model = ConvNet(10)
  apply_fn = jax.jit(make_apply_fn(model, get_dataset_spec('cifar10'), 'pixels'))
  params = load_torch_convnet(path, model, 32)
  correct = 0
  for start in range(0, len(labels), 1000):
    logits = apply_fn(params, images[start : start + 1000])
    correct += int((np.argmax(logits, -1) == labels[start : start + 1000]).sum())
  assert parse_beard_checkpoint_name(path)['method'] == method
  assert round(100 * correct / len(labels), 2) == PUBLISHED_ACCURACIES[method]

"""Building blocks of beard_jax.distill: class-indexed sampling, embedding, Siamese DSA, 4-in-1."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from beard_jax.data.augment import dsa_augment
from beard_jax.data.dataset_pool import upsample2x_bilinear
from beard_jax.data.specs import DatasetSpec
from beard_jax.distill import embedding, factorized, real_data
from beard_jax.models.convnet import ConvNet
from beard_jax.models.torch_import import convert_state_dict

SPEC = DatasetSpec('toy8', 3, 8, 3, (0.5, 0.4, 0.3), (0.25, 0.2, 0.3))


def _uneven_set():
  """Class 0: 7 images, class 1: 3, class 2: 5; pixel value encodes the image's index."""
  labels = np.array([0] * 7 + [1] * 3 + [2] * 5)
  images = np.broadcast_to(np.arange(15, dtype=np.uint8)[:, None, None, None], (15, 8, 8, 3))
  order = np.random.default_rng(0).permutation(15)
  return np.ascontiguousarray(images[order]), labels[order]


def test_index_by_class_and_class_draws():
  images, labels = _uneven_set()
  data = real_data.index_by_class(images, labels, 3)
  assert data.images.shape == (3, 7, 8, 8, 3) and data.counts.tolist() == [7, 3, 5]
  members = {c: set(images[labels == c, 0, 0, 0].tolist()) for c in range(3)}
  for seed in range(5):
    drawn, valid = real_data.sample_class(jax.random.key(seed), data, 1, 5)
    ids = np.asarray(drawn)[:, 0, 0, 0]
    assert valid.tolist() == [True] * 3 + [False] * 2  # The class has 3: all of them, then padding.
    assert set(ids[:3].tolist()) == members[1]
    drawn, valid = real_data.sample_class(jax.random.key(seed), data, 0, 4)
    ids = np.asarray(drawn)[:, 0, 0, 0]
    assert valid.all() and len(set(ids.tolist())) == 4 and set(ids.tolist()) <= members[0]
  pooled, pooled_labels = real_data.sample_pooled(jax.random.key(0), data, 15)
  ids = np.asarray(pooled)[:, 0, 0, 0]
  assert sorted(ids.tolist()) == list(range(15))  # Without replacement over the whole set.
  for image_id, label in zip(ids, np.asarray(pooled_labels), strict=True):
    assert image_id in members[int(label)]


def test_index_by_class_refusals():
  images, labels = _uneven_set()
  with pytest.raises(ValueError, match='have no real image'):
    real_data.index_by_class(images, labels, 4)
  with pytest.raises(ValueError, match='uint8'):
    real_data.index_by_class(images.astype(np.float32), labels, 3)
  with pytest.raises(ValueError, match=r'lie in \[0, 2\)'):
    real_data.index_by_class(images, labels, 2)
  digest = real_data.real_data_sha256(images, labels)
  assert digest == real_data.real_data_sha256(images.copy(), labels.astype(np.int32))
  assert digest != real_data.real_data_sha256(images, np.roll(labels, 1))


def test_features_are_the_classifier_input_and_match_torch():
  torch = pytest.importorskip('torch')
  from tests.parity.torch_convnet import TorchConvNet

  torch.manual_seed(0)
  net = TorchConvNet(num_classes=10, width=16, depth=3, image_size=32).eval()
  model = ConvNet(10, width=16, depth=3)
  state = {name: value.numpy() for name, value in net.state_dict().items()}
  params = convert_state_dict(state, model, image_size=32)
  x = np.random.default_rng(0).normal(size=(5, 32, 32, 3)).astype(np.float32)
  ours, logits = embedding.features_and_logits(model, params, x)
  with torch.no_grad():
    theirs = net.features(torch.from_numpy(x.transpose(0, 3, 1, 2))).flatten(1).numpy()
  np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)  # DM's `net.embed`.
  np.testing.assert_allclose(logits, model.apply(params, x), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(embedding.features(model, params, x), ours)
  np.testing.assert_allclose(embedding.embed_all(model, params, x, batch_size=2), ours, atol=1e-6)


def test_siamese_augment_shares_one_draw_across_batches():
  rng = np.random.default_rng(0)
  real = rng.normal(size=(6, 8, 8, 3)).astype(np.float32)
  syn = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)
  syn[1] = real[4]  # The same image in both batches must come out the same.
  strategy = 'color_crop_cutout_flip_scale_rotate'

  @jax.jit
  def augment(key):
    alone = dsa_augment(key, real[2:3], strategy)[0]
    siamese = functools.partial(embedding.siamese_augment, key, strategy=strategy)
    return siamese(real), siamese(syn), alone

  changed = 0
  for seed in range(6):
    out_real, out_syn, alone = augment(jax.random.key(seed))
    np.testing.assert_allclose(out_syn[1], out_real[4], atol=1e-6)
    # Image i is what DSA does to it alone with the same key: one draw for the batch.
    np.testing.assert_allclose(out_real[2], alone, atol=1e-6)
    changed += not np.allclose(out_real, real)
  assert changed >= 4
  np.testing.assert_array_equal(embedding.siamese_augment(jax.random.key(0), real, 'none'), real)


def test_4in1_resampling_matches_pytorch_and_the_pool_reader():
  torch = pytest.importorskip('torch')
  x = np.random.default_rng(0).normal(size=(2, 8, 6, 3)).astype(np.float32)
  nchw = torch.from_numpy(x.transpose(0, 3, 1, 2))
  up = torch.nn.functional.interpolate(nchw, scale_factor=2, mode='bilinear', align_corners=False)
  down = torch.nn.functional.interpolate(nchw, scale_factor=0.5, mode='bilinear')
  np.testing.assert_allclose(factorized.upsample2x(x), up.numpy().transpose(0, 2, 3, 1), atol=1e-6)
  np.testing.assert_allclose(factorized.upsample2x(x), upsample2x_bilinear(x), atol=1e-6)
  np.testing.assert_allclose(
    factorized.downscale2x(x), down.numpy().transpose(0, 2, 3, 1), atol=1e-6
  )


def test_decode_and_encode_follow_idm_quadrant_order():
  # Four constant "images" a, b, c, d shrunk into the quadrants and decoded back.
  sources = jnp.stack([jnp.full((1, 8, 8, 3), float(v)) for v in (1, 2, 3, 4)])
  packed = factorized.encode_4in1(sources)
  assert float(packed[0, 0, 0, 0]) == 1.0  # top-left
  assert float(packed[0, 7, 0, 0]) == 2.0  # bottom-left
  assert float(packed[0, 0, 7, 0]) == 3.0  # top-right
  assert float(packed[0, 7, 7, 0]) == 4.0  # bottom-right
  decoded = factorized.decode_4in1(packed)
  np.testing.assert_array_equal(np.asarray(decoded)[:, 3, 3, 0], [1, 2, 3, 4])
  with pytest.raises(ValueError, match='even'):
    factorized.decode_4in1(jnp.zeros((1, 7, 8, 3)))

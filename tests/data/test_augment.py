"""Tests of beard_jax.data.augment (DSA): exact properties of every op, determinism, tracing."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from beard_jax.data import augment
from beard_jax.data.augment import DSAParams, dsa_augment, parse_strategy, translate

STRATEGY = augment.DEFAULT_STRATEGY
OPS = parse_strategy(STRATEGY)
DEFAULT_PARAMS = DSAParams()


def _batch(batch=6, height=16, width=16, channels=3, seed=0):
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.normal(size=(batch, height, width, channels)).astype(np.float32))


# Jitted once per (shape, strategy, params): eager calls would re-trace every switch branch.
_augment = jax.jit(dsa_augment, static_argnames=('strategy', 'params'))
_translate = jax.jit(translate)


def _force(name, key, x, params=None):
  """Applies op `name` alone (a one-op strategy compiles one branch, not six)."""
  return _augment(key, x, name, DEFAULT_PARAMS if params is None else params)


def test_parse_strategy_names_and_errors():
  assert OPS == ('color', 'crop', 'cutout', 'flip', 'scale', 'rotate')
  with pytest.raises(ValueError, match='choose from'):
    parse_strategy('color_blur')
  with pytest.raises(ValueError, match='empty'):
    parse_strategy('')
  with pytest.raises(ValueError, match='out of range'):
    dsa_augment(jax.random.key(0), _batch(), 'flip', op_index=1)


@pytest.mark.parametrize('name', OPS)
def test_each_op_preserves_shape_dtype_and_is_deterministic(name):
  x = _batch(height=12, width=20)
  out1 = _force(name, jax.random.key(3), x)
  out2 = _force(name, jax.random.key(3), x)
  assert out1.shape == x.shape and out1.dtype == jnp.float32
  np.testing.assert_array_equal(np.asarray(out1), np.asarray(out2))
  assert np.all(np.isfinite(np.asarray(out1)))


@pytest.mark.parametrize('name', OPS)
def test_different_keys_give_different_outputs(name):
  x = _batch(batch=8)
  outs = [np.asarray(_force(name, jax.random.key(k), x)) for k in range(3)]
  assert not np.array_equal(outs[0], outs[1]) or not np.array_equal(outs[0], outs[2])


def test_random_op_choice_covers_all_ops_and_matches_a_forced_op():
  x = _batch(batch=4)
  hits = set()
  for k in range(30):
    key = jax.random.key(k)
    out = np.asarray(_augment(key, x))
    for i, name in enumerate(OPS):
      forced = np.asarray(_augment(key, x, op_index=i))
      if np.array_equal(out, forced):
        hits.add(name)
      # Forcing op i of the full strategy is the same as running op i alone.
      if k == 0:
        np.testing.assert_array_equal(forced, np.asarray(_force(name, key, x)))
  assert hits == set(OPS)


def test_flip_is_an_exact_mirror_or_identity_per_image():
  x = _batch(batch=16)
  out = np.asarray(_force('flip', jax.random.key(1), x))
  mirrored = [np.array_equal(o, xi[:, ::-1]) for o, xi in zip(out, np.asarray(x), strict=True)]
  same = [np.array_equal(o, xi) for o, xi in zip(out, np.asarray(x), strict=True)]
  assert all(m or s for m, s in zip(mirrored, same, strict=True))
  assert any(mirrored) and any(same)
  always = np.asarray(_force('flip', jax.random.key(1), x, DSAParams(prob_flip=1.0)))
  np.testing.assert_array_equal(always, np.asarray(x)[:, :, ::-1])


def test_translate_matches_hand_shift_with_zero_fill():
  x = np.arange(2 * 5 * 6 * 2, dtype=np.float32).reshape(2, 5, 6, 2) + 1.0
  out = np.asarray(_translate(jnp.asarray(x), jnp.array([2, -1]), jnp.array([-3, 0])))
  expected = np.zeros_like(x)
  expected[0, :3, 3:] = x[0, 2:, :3]  # out[i, j] = x[i + 2, j - 3]
  expected[1, 1:, :] = x[1, :4, :]  # out[i, j] = x[i - 1, j]
  np.testing.assert_array_equal(out, expected)


def test_crop_is_an_integer_shift_within_range_with_zero_fill():
  x = _batch(batch=12, height=16, width=16) + 10.0  # no zeros in the input
  out = np.asarray(_force('crop', jax.random.key(5), x))
  max_shift = int(16 * 0.125 + 0.5)
  candidates = [
    (dh, dw) for dh in range(-max_shift, max_shift + 1) for dw in range(-max_shift, max_shift + 1)
  ]
  shift_h = jnp.array([c[0] for c in candidates])
  shift_w = jnp.array([c[1] for c in candidates])
  shifts = []
  for o, xi in zip(out, np.asarray(x), strict=True):
    moved = np.asarray(
      _translate(jnp.broadcast_to(xi, (len(candidates), *xi.shape)), shift_h, shift_w)
    )
    found = [c for c, m in zip(candidates, moved, strict=True) if np.array_equal(o, m)]
    assert len(found) == 1, 'each image must be exactly one integer translation'
    shifts.append(found[0])
  assert len(set(shifts)) > 1, 'images draw their own shifts'


def test_cutout_zeroes_one_square_of_half_the_side():
  x = _batch(batch=32, height=16, width=16) + 10.0
  out = np.asarray(_force('cutout', jax.random.key(7), x))
  side = int(16 * 0.5 + 0.5)
  sizes = []
  for o, xi in zip(out, np.asarray(x), strict=True):
    zero = np.all(o == 0.0, axis=-1)
    np.testing.assert_array_equal(o[~zero], xi[~zero])  # the rest is untouched
    rows, cols = np.nonzero(np.any(zero, axis=1)), np.nonzero(np.any(zero, axis=0))
    rows, cols = rows[0], cols[0]
    # A rectangle (the square clipped at the border), contiguous, at most side × side.
    assert zero.sum() == len(rows) * len(cols)
    assert np.all(np.diff(rows) == 1) and np.all(np.diff(cols) == 1)
    assert 1 <= len(rows) <= side and 1 <= len(cols) <= side
    sizes.append((len(rows), len(cols)))
  assert (side, side) in sizes  # a fully inside square occurs
  assert any(s != (side, side) for s in sizes)  # and one over the border


def test_color_with_zero_saturation_gives_grey_images_with_the_input_mean():
  x = _batch(batch=4)
  params = DSAParams(brightness=0.0, saturation=0.0, contrast=1.0)
  out = np.asarray(_force('color', jax.random.key(2), x, params))
  # Saturation factor 0 makes every channel equal to the per-pixel mean.
  np.testing.assert_allclose(out[..., 0], out[..., 1], atol=1e-6)
  # Brightness 0, and saturation and contrast keep the per-image mean.
  np.testing.assert_allclose(
    out.mean(axis=(1, 2, 3)), np.asarray(x).mean(axis=(1, 2, 3)), atol=1e-5
  )


def test_color_moves_each_image_mean_by_its_brightness_only():
  x = _batch(batch=16)
  out = np.asarray(_force('color', jax.random.key(4), x))
  shift = out.mean(axis=(1, 2, 3)) - np.asarray(x).mean(axis=(1, 2, 3))
  # Saturation and contrast keep the image mean, so the mean moves by (u - 0.5) · 1.0 only.
  assert np.all(np.abs(shift) <= 0.5 + 1e-5)
  assert len(np.unique(np.round(shift, 4))) == len(shift), 'images draw their own brightness'


def test_rotate_zero_and_scale_one_are_identity():
  x = _batch(height=16, width=12)
  np.testing.assert_array_equal(
    np.asarray(_force('rotate', jax.random.key(0), x, DSAParams(ratio_rotate=0.0))), np.asarray(x)
  )
  np.testing.assert_array_equal(
    np.asarray(_force('scale', jax.random.key(0), x, DSAParams(ratio_scale=1.0))), np.asarray(x)
  )


def test_affine_resample_hand_values():
  # A 1 × 1 × 3 × 1 ramp (H=1 keeps rows fixed) shifted by half a pixel to the right.
  x = jnp.array([0.0, 2.0, 4.0]).reshape(1, 1, 3, 1)
  half_pixel = 0.5 / 1.0  # normalised units: (W - 1) / 2 = 1 pixel per unit
  theta = jnp.array([[[1.0, 0.0, half_pixel], [0.0, 1.0, 0.0]]])
  out = np.asarray(jax.jit(augment.affine_resample)(x, theta)).ravel()
  # Reads x at 0.5, 1.5, 2.5 → 1, 3, and half of 4 (the other tap is outside: 0).
  np.testing.assert_allclose(out, [1.0, 3.0, 2.0], atol=1e-6)


def test_rotate_by_ninety_degrees_on_square_is_exact_rotation():
  x = _batch(batch=2, height=9, width=9)
  theta = jnp.tile(jnp.array([[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]]), (2, 1, 1))
  out = np.asarray(augment.affine_resample(x, theta))
  # out[i, j] reads (u', v') = (-v, u): input row j, column W - 1 - i.
  expected = np.asarray(x)[:, :, ::-1, :].transpose(0, 2, 1, 3)
  np.testing.assert_allclose(out, expected, atol=1e-5)


def test_scale_and_rotate_stay_within_input_range_and_keep_the_centre():
  # Bilinear weights are a convex combination of taps (zeros outside): |out| <= max|x|.
  x = _batch(batch=8, height=17, width=17)
  for name in ('scale', 'rotate'):
    out = np.asarray(_force(name, jax.random.key(9), x))
    assert np.max(np.abs(out)) <= np.max(np.abs(np.asarray(x))) + 1e-5
    np.testing.assert_allclose(out[:, 8, 8], np.asarray(x)[:, 8, 8], atol=1e-5)


def test_jit_compiles_once_and_vmaps_over_keys():
  traces = []

  def fn(key, x):
    traces.append(1)
    return dsa_augment(key, x)

  jitted = jax.jit(fn)
  x = _batch(batch=4)
  a = jitted(jax.random.key(0), x)
  b = jitted(jax.random.key(1), x)
  assert len(traces) == 1 and a.shape == b.shape == x.shape
  keys = jax.random.split(jax.random.key(0), 3)
  stacked = jax.jit(jax.vmap(dsa_augment, in_axes=(0, None)))(keys, x)
  for k in range(3):
    np.testing.assert_allclose(
      np.asarray(stacked[k]), np.asarray(_augment(keys[k], x)), rtol=1e-5, atol=1e-5
    )

"""`conv3x3_same` (hand-written gradient) against XLA's own convolution and its autodiff."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from beard_jax.models import conv
from beard_jax.models.conv import conv3x3_same


def _reference(x, kernel):
  return lax.conv_general_dilated(
    x, kernel, (1, 1), ((1, 1), (1, 1)), dimension_numbers=('NHWC', 'HWIO', 'NHWC')
  )


@pytest.mark.parametrize('channels', [3, 16])
def test_values_and_gradients_equal_autodiff_of_lax_conv(channels):
  rng = np.random.default_rng(channels)
  x = jnp.asarray(rng.normal(size=(2, 8, 6, channels)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(3, 3, channels, 5)), jnp.float32)
  cotangent = jnp.asarray(rng.normal(size=(2, 8, 6, 5)), jnp.float32)
  out, vjp = jax.vjp(jax.jit(conv3x3_same), x, kernel)
  ref_out, ref_vjp = jax.vjp(_reference, x, kernel)
  np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-5)
  for grad, ref_grad in zip(vjp(cotangent), ref_vjp(cotangent), strict=True):
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=1e-4)


def test_inside_a_loop_the_gradient_is_unchanged():
  # The reason conv3x3_same exists: gradients inside while_loop bodies (training, attacks).
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 8, 8, 3)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(3, 3, 3, 4)), jnp.float32)

  def two_steps(conv):
    step = jax.grad(lambda z: jnp.sum(jnp.tanh(conv(z, kernel))))
    return jax.jit(lambda z: lax.fori_loop(0, 2, lambda _, u: u - 0.1 * step(u), z))(x)

  np.testing.assert_allclose(two_steps(conv3x3_same), two_steps(_reference), rtol=1e-4, atol=1e-5)


def test_second_order_gradients_equal_autodiff_of_lax_conv():
  """DC and MTT differentiate gradients: the hand-written backward pass must differentiate
  like XLA's own (reverse over reverse, through a nonlinearity, w.r.t. input and kernel)."""
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(2, 6, 5, 3)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(3, 3, 3, 4)), jnp.float32)

  def gradient_norm(conv):
    def loss(x, kernel):
      return jnp.sum(jnp.tanh(conv(x, kernel)) ** 2)

    # A second-order quantity, as DC's matching distance and MTT's unrolled step.
    return lambda x, kernel: sum(jnp.sum(g**2) for g in jax.grad(loss, (0, 1))(x, kernel))

  ours = jax.jit(jax.grad(gradient_norm(conv3x3_same), (0, 1)))(x, kernel)
  reference = jax.grad(gradient_norm(_reference), (0, 1))(x, kernel)
  for a, b in zip(ours, reference, strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.abs(b).max()))


@pytest.mark.parametrize(
  'kernel_gradient', [conv._kernel_gradient_by_patches, conv._kernel_gradient_by_correlation]
)
def test_both_kernel_gradients_equal_autodiff_of_lax_conv(kernel_gradient):
  # The CPU computes the kernel gradient from im2col patches, accelerators as a convolution:
  # both formulations, whichever platform runs the tests.
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.normal(size=(3, 7, 5, 4)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(3, 3, 4, 6)), jnp.float32)
  cotangent = jnp.asarray(rng.normal(size=(3, 7, 5, 6)), jnp.float32)
  _, vjp = jax.vjp(lambda k: _reference(x, k), kernel)
  (expected,) = vjp(cotangent)
  np.testing.assert_allclose(jax.jit(kernel_gradient)(x, cotangent), expected, rtol=1e-4, atol=1e-4)

"""A 3×3, stride-1, 'same' convolution whose gradients XLA:CPU runs on its fast path.

Why this exists: inside a `lax.while_loop` body (every `fori_loop`/`scan` of
training and of iterative attacks), XLA:CPU leaves the convolutions that
autodiff produces in non-canonical dimension orders — the kernel gradient as
`f01b_i01o->01bf`, the input gradient with an `01oi` kernel — and runs them
with its generic loop emitter instead of the Eigen kernels. Outside a loop its
layout pass rewrites them into the canonical `b01f_01io->b01f` form. Measured
on the BEARD ConvNet, 100 CIFAR images, 2-core CPU: one SGD step 0.6 s outside
a loop, 30 s inside `fori_loop`. Here the backward pass is written out as two
convolutions already in canonical NHWC/HWIO form, so the loop body gets the
fast kernels too; the values are those of autodiff (tested).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

_DIMENSIONS = ('NHWC', 'HWIO', 'NHWC')
_SAME_3X3 = ((1, 1), (1, 1))


def _conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  return lax.conv_general_dilated(x, kernel, (1, 1), _SAME_3X3, dimension_numbers=_DIMENSIONS)


@jax.custom_vjp
def conv3x3_same(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Cross-correlation, stride 1, zero padding 1 (PyTorch's Conv2d(3, padding=1)).

  Args:
    x: [B, H, W, C_in] float32.
    kernel: [3, 3, C_in, C_out] float32 (HWIO).

  Returns:
    [B, H, W, C_out] float32.
  """
  return _conv(x, kernel)


def _forward(x, kernel):
  return _conv(x, kernel), (x, kernel)


def _backward(residuals, grad_out):
  x, kernel = residuals
  # Input gradient: correlate with the spatially flipped kernel, in/out swapped.
  flipped = jnp.transpose(jnp.flip(kernel, (0, 1)), (0, 1, 3, 2))
  grad_x = _conv(grad_out, flipped)
  # Kernel gradient: dK[i, j, c, o] = Σ_{b,h,w} x_pad[b, h+i, w+j, c] · g[b, h, w, o],
  # a correlation over (h, w) with C_in as the batch and B as the contracted features.
  grad_kernel = _conv(jnp.transpose(x, (3, 1, 2, 0)), jnp.transpose(grad_out, (1, 2, 0, 3)))
  return grad_x, jnp.transpose(grad_kernel, (1, 2, 0, 3))


conv3x3_same.defvjp(_forward, _backward)

"""A 3×3, stride-1, 'same' convolution whose gradients XLA:CPU runs on its fast path.

Why this exists: inside a `lax.while_loop` body (every `fori_loop`/`scan` of
training and of iterative attacks), XLA:CPU leaves the convolutions that
autodiff produces in non-canonical dimension orders — the kernel gradient as
`f01b_i01o->01bf`, the input gradient with an `01oi` kernel — and runs them
with its generic loop emitter instead of the Eigen kernels. Outside a loop its
layout pass rewrites them into the canonical `b01f_01io->b01f` form. Measured
on the BEARD ConvNet, 100 CIFAR images, 2-core CPU: one SGD step 0.6 s outside
a loop, 30 s inside `fori_loop`. Here the backward pass is written out in canonical
NHWC/HWIO form, so the loop body gets the fast kernels too: the input gradient as a
convolution, the kernel gradient as one matmul of im2col patches on a CPU (XLA:CPU's
convolution with an H×W kernel is several times slower) and as a convolution elsewhere;
the values are those of autodiff (tested). The backward pass is
itself built from `conv3x3_same` and `_kernel_gradient`, whose own gradients are
written the same way, so derivatives of every order stay on the fast path: DC's and
MTT's second-order gradients inside loops would otherwise take the generic emitter
(`bench/RESULTS.md`, bench_mtt).
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


def _input_gradient(grad_out: jax.Array, kernel: jax.Array) -> jax.Array:
  """∂⟨g, conv(x, K)⟩/∂x: correlate g with the spatially flipped kernel, in/out swapped."""
  return conv3x3_same(grad_out, jnp.transpose(jnp.flip(kernel, (0, 1)), (0, 1, 3, 2)))


def _patches(x: jax.Array) -> jax.Array:
  """[B, H, W, C] → [B, H, W, 9·C]: each pixel's zero-padded 3×3 neighbourhood, (i, j, c)
  order (im2col)."""
  height, width = x.shape[1:3]
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  shifted = [padded[:, i : i + height, j : j + width] for i in range(3) for j in range(3)]
  return jnp.concatenate(shifted, axis=-1)


def _kernel_gradient_by_patches(x: jax.Array, grad_out: jax.Array) -> jax.Array:
  # One matmul [9·C_in, B·H·W] @ [B·H·W, C_out]: XLA:CPU runs the correlation below as a
  # convolution with an H×W kernel, several times slower (bench/RESULTS.md).
  patches = _patches(x).reshape(-1, 9 * x.shape[-1])
  grad_kernel = patches.T @ grad_out.reshape(-1, grad_out.shape[-1])
  return grad_kernel.reshape(3, 3, x.shape[-1], grad_out.shape[-1])


def _kernel_gradient_by_correlation(x: jax.Array, grad_out: jax.Array) -> jax.Array:
  # A correlation over (h, w) with C_in as the batch and B as the contracted features.
  grad_kernel = _conv(jnp.transpose(x, (3, 1, 2, 0)), jnp.transpose(grad_out, (1, 2, 0, 3)))
  return jnp.transpose(grad_kernel, (1, 2, 0, 3))


def _correlate_for_kernel(x: jax.Array, grad_out: jax.Array) -> jax.Array:
  # Accelerators keep the convolution (their conv libraries' weight-gradient kernels).
  return lax.platform_dependent(
    x, grad_out, cpu=_kernel_gradient_by_patches, default=_kernel_gradient_by_correlation
  )


@jax.custom_vjp
def _kernel_gradient(x: jax.Array, grad_out: jax.Array) -> jax.Array:
  """∂⟨g, conv(x, K)⟩/∂K [3, 3, C_in, C_out]: dK[i, j, c, o] = Σ_{b,h,w} x_pad[b, h+i, w+j, c]
  · g[b, h, w, o]."""
  return _correlate_for_kernel(x, grad_out)


def _kernel_gradient_forward(x, grad_out):
  # Through the custom_vjp itself, so that an outer derivative of this primal stays custom.
  return _kernel_gradient(x, grad_out), (x, grad_out)


def _kernel_gradient_backward(residuals, grad_kernel_cotangent):
  # ⟨dK, kernel_gradient(x, g)⟩ = ⟨g, conv(x, dK)⟩: the same bilinear form as the forward.
  x, grad_out = residuals
  return (
    _input_gradient(grad_out, grad_kernel_cotangent),
    conv3x3_same(x, grad_kernel_cotangent),
  )


_kernel_gradient.defvjp(_kernel_gradient_forward, _kernel_gradient_backward)


def _forward(x, kernel):
  # Through the custom_vjp itself: differentiating a gradient (DC, MTT) differentiates this
  # primal too, which must not fall back to autodiff of the plain convolution.
  return conv3x3_same(x, kernel), (x, kernel)


def _backward(residuals, grad_out):
  x, kernel = residuals
  return _input_gradient(grad_out, kernel), _kernel_gradient(x, grad_out)


conv3x3_same.defvjp(_forward, _backward)

"""ZCA whitening as MTT's code applies it (kornia's `ZCAWhitening(eps=0.1)`).

MTT (`utils.get_dataset(..., zca=True)`) fits the transform on the real training
set at pixel scale ([0, 1], no mean/std normalisation), whitens the training and
test sets with it, and trains experts and synthetic images in the whitened space;
`images_zca_*.pt` are the synthetic images mapped back (the inverse transform).

Fit (kornia `zca_mean`, unbiased): with X the [N, D] flattened images and μ their
mean, Σ = (X − μ)ᵀ(X − μ) / (N − 1) = U diag(S) Uᵀ; the transform is
W = U diag((S + ε)^−½) Uᵀ and its inverse W⁻¹ = U diag((S + ε)^½) Uᵀ:

  whiten(x) = (x − μ) W,     unwhiten(z) = z W⁻¹ + μ.

Images are flattened in our H, W, C order rather than torch's C, H, W: a fixed
permutation of the D coordinates, which conjugates Σ, W and W⁻¹ and gives the
same whitened pixels, permuted the same way.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

MTT_EPS = 0.1


class ZCA(NamedTuple):
  """A fitted ZCA transform over images of one shape (D = H·W·C).

  Attributes:
    mean: float32 [D], the mean image at pixel scale, flattened H, W, C.
    whiten: float32 [D, D] symmetric, W.
    unwhiten: float32 [D, D] symmetric, W⁻¹.
  """

  mean: jax.Array
  whiten: jax.Array
  unwhiten: jax.Array


def fit_zca(images: np.ndarray, eps: float = MTT_EPS, chunk: int = 4096) -> ZCA:
  """Fits ZCA on uint8 [N, H, W, C] images (scaled to [0, 1] first, as MTT's ToTensor).

  Σ is accumulated in float32 on the device over chunks of `chunk` images (bounded
  memory), then eigendecomposed in float64 on the host.

  Raises:
    ValueError: fewer than two images, or eps ≤ 0.
  """
  if images.ndim != 4 or images.shape[0] < 2:
    raise ValueError(f'ZCA needs uint8 images [N ≥ 2, H, W, C], got {images.shape}')
  if eps <= 0:
    raise ValueError(f'ZCA eps must be > 0, got {eps}')
  count, dim = images.shape[0], int(np.prod(images.shape[1:]))
  flat = images.reshape(count, dim)
  mean = np.zeros(dim, np.float64)
  for start in range(0, count, chunk):
    mean += flat[start : start + chunk].astype(np.float64).sum(0) / 255.0
  mean /= count
  mean32 = jnp.asarray(mean, jnp.float32)

  @jax.jit
  def add_chunk(total, rows):
    centred = rows.astype(jnp.float32) / 255.0 - mean32
    return total + jnp.dot(centred.T, centred, precision=jax.lax.Precision.HIGHEST)

  covariance = jnp.zeros((dim, dim), jnp.float32)
  for start in range(0, count, chunk):
    covariance = add_chunk(covariance, jnp.asarray(flat[start : start + chunk]))
  covariance = np.asarray(covariance, np.float64) / (count - 1)
  eigenvalues, vectors = np.linalg.eigh((covariance + covariance.T) / 2)
  eigenvalues = np.clip(eigenvalues, 0.0, None) + eps
  whiten = (vectors / np.sqrt(eigenvalues)) @ vectors.T
  unwhiten = (vectors * np.sqrt(eigenvalues)) @ vectors.T
  return ZCA(mean32, jnp.asarray(whiten, jnp.float32), jnp.asarray(unwhiten, jnp.float32))


def whiten(zca: ZCA, pixels: jax.Array) -> jax.Array:
  """[..., H, W, C] pixel-scale float → whitened, same shape (traceable)."""
  shape = pixels.shape
  flat = pixels.reshape(-1, zca.mean.shape[0]) - zca.mean
  return jnp.dot(flat, zca.whiten, precision=jax.lax.Precision.HIGHEST).reshape(shape)


def unwhiten(zca: ZCA, whitened: jax.Array) -> jax.Array:
  """The inverse of `whiten`: whitened [..., H, W, C] → pixel scale (traceable)."""
  shape = whitened.shape
  flat = whitened.reshape(-1, zca.mean.shape[0])
  return (jnp.dot(flat, zca.unwhiten, precision=jax.lax.Precision.HIGHEST) + zca.mean).reshape(
    shape
  )

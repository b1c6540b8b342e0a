"""DSA's scale/rotate resampler against PyTorch's affine_grid + grid_sample (align_corners=True)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from beard_jax.data.augment import affine_resample

torch = pytest.importorskip(
  'torch', reason='parity with torch.nn.functional.grid_sample needs torch'
)
F = pytest.importorskip('torch.nn.functional', reason='needs torch')


@pytest.mark.parametrize('height,width', [(32, 32), (9, 14)])
def test_affine_resample_matches_torch_grid_sample(height, width):
  rng = np.random.default_rng(height * width)
  x = rng.normal(size=(5, height, width, 3)).astype(np.float32)
  angle = rng.uniform(-0.3, 0.3, size=5)
  scale = rng.uniform(1 / 1.2, 1.2, size=(5, 2))
  shift = rng.uniform(-0.2, 0.2, size=(5, 2))
  theta = np.stack(
    [
      np.stack([scale[:, 0] * np.cos(angle), -np.sin(angle), shift[:, 0]], -1),
      np.stack([np.sin(angle), scale[:, 1] * np.cos(angle), shift[:, 1]], -1),
    ],
    axis=1,
  ).astype(np.float32)
  ours = np.asarray(jax.jit(affine_resample)(x, theta))
  x_nchw = torch.from_numpy(x).permute(0, 3, 1, 2)
  grid = F.affine_grid(torch.from_numpy(theta), list(x_nchw.shape), align_corners=True)
  reference = F.grid_sample(x_nchw, grid, mode='bilinear', padding_mode='zeros', align_corners=True)
  np.testing.assert_allclose(ours, reference.permute(0, 2, 3, 1).numpy(), atol=1e-4)

"""A toy real set for the distillation tests: 8×8 images, 3 classes, class-dependent colours."""

from __future__ import annotations

import numpy as np

from beard_jax.data.specs import DatasetSpec

TOY_SPEC = DatasetSpec('toy8', 3, 8, 3, (0.5, 0.4, 0.3), (0.25, 0.2, 0.3))


def toy_real_set(per_class: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """uint8 [3·per_class, 8, 8, 3] images whose colour and texture depend on the class."""
  rng = np.random.default_rng(seed)
  labels = np.repeat(np.arange(3), per_class)
  base = rng.uniform(0, 0.4, size=(labels.size, 8, 8, 3))
  base[np.arange(labels.size), :, :, labels] += 0.5  # One bright channel per class.
  base[labels == 1, ::2] *= 0.5  # Stripes for class 1.
  return (np.clip(base, 0, 1) * 255).astype(np.uint8), labels

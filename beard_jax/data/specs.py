"""Static facts about the real datasets BEARD uses: shape, classes, normalisation."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """What a model needs to know about a dataset.

  Attributes:
    name: canonical lower-case name (`cifar10`, `cifar100`, `tinyimagenet`).
    num_classes: K.
    image_size: side of the square images, in pixels.
    channels: 3 (RGB) for every BEARD dataset.
    mean: per-channel mean of the [0, 1] training pixels, used to normalise.
    std: per-channel standard deviation, used to normalise.
  """

  name: str
  num_classes: int
  image_size: int
  channels: int
  mean: tuple[float, float, float]
  std: tuple[float, float, float]

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """[H, W, C] of one image."""
    return (self.image_size, self.image_size, self.channels)


# The statistics used by the dataset-distillation literature and by BEARD.
DATASET_SPECS: dict[str, DatasetSpec] = {
  'cifar10': DatasetSpec('cifar10', 10, 32, 3, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
  'cifar100': DatasetSpec(
    'cifar100', 100, 32, 3, (0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762)
  ),
  'tinyimagenet': DatasetSpec(
    'tinyimagenet', 200, 64, 3, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
  ),
}

_ALIASES = {
  'cifar-10': 'cifar10',
  'cifar-100': 'cifar100',
  'tiny-imagenet': 'tinyimagenet',
  'tiny_imagenet': 'tinyimagenet',
  'tiny-imagenet-200': 'tinyimagenet',
  'tiny': 'tinyimagenet',
}


def canonical_dataset_name(name: str) -> str:
  """Maps `CIFAR10`, `cifar-10`, `Tiny-ImageNet`, … to the canonical name."""
  key = name.strip().lower()
  key = _ALIASES.get(key, key)
  if key not in DATASET_SPECS:
    raise ValueError(f'unknown dataset {name!r}; choose from {sorted(DATASET_SPECS)}')
  return key


def get_dataset_spec(name: str) -> DatasetSpec:
  """Returns the `DatasetSpec` of `name` (case and dashes do not matter)."""
  return DATASET_SPECS[canonical_dataset_name(name)]

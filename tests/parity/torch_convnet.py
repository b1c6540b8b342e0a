"""A PyTorch ConvNet identical to BEARD's (features.0/1/4/5/8/9 + classifier), for parity tests.

Written from PROTOCOL.md §2; its state_dict keys match BEARD's `.pth` files so
`load_state_dict` takes a published checkpoint as it is.
"""

from __future__ import annotations

import torch
from torch import nn


class TorchConvNet(nn.Module):
  """Conv 3×3 → GroupNorm(width, width) → ReLU → AvgPool 2×2, `depth` times, then Linear."""

  def __init__(self, num_classes: int = 10, width: int = 128, depth: int = 3, image_size: int = 32):
    super().__init__()
    layers = []
    channels = 3
    for _ in range(depth):
      layers += [
        nn.Conv2d(channels, width, kernel_size=3, padding=1),
        nn.GroupNorm(width, width, eps=1e-5, affine=True),
        nn.ReLU(inplace=True),
        nn.AvgPool2d(kernel_size=2, stride=2),
      ]
      channels = width
    self.features = nn.Sequential(*layers)
    side = image_size // 2**depth
    self.classifier = nn.Linear(width * side * side, num_classes)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    """x: [B, 3, H, W] normalised → logits [B, K]."""
    return self.classifier(self.features(x).flatten(1))


class Normalized(nn.Module):
  """Takes [0, 1] pixels: `model((x - mean) / std)` (the `standard` protocol)."""

  def __init__(self, model: nn.Module, mean, std):
    super().__init__()
    self.model = model
    self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
    self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.model((x - self.mean) / self.std)


CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)


def torch_convnet(
  checkpoint=None,
  pixels: bool = True,
  state_dict: dict | None = None,
  num_classes: int = 10,
  mean=CIFAR10_MEAN,
  std=CIFAR10_STD,
) -> nn.Module:
  """A BEARD ConvNet in eval mode, from a `.pth` (torch.load, weights_only) or a state_dict.

  Args:
    checkpoint: path of a BEARD `.pth` state_dict, or None to use `state_dict`.
    pixels: wrap in `Normalized` so the net takes [0, 1] pixels (the `standard`
      protocol); False returns the bare net on normalised input (the `beard` protocol).
    state_dict: torch tensors by BEARD's key names (used when `checkpoint` is None).
    num_classes: K of the classifier.
    mean: per-channel normalisation mean (CIFAR-10 by default).
    std: per-channel normalisation std.

  Returns:
    A `torch.nn.Module` taking NCHW float32 tensors.
  """
  if checkpoint is not None:
    state_dict = torch.load(checkpoint, map_location='cpu', weights_only=True)
  net = TorchConvNet(num_classes)
  net.load_state_dict(state_dict)
  if pixels:
    net = Normalized(net, mean, std)
  return net.eval()

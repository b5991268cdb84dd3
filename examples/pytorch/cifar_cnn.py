"""A small CIFAR-10-style CNN (3x32x32 images, 10 classes) with random, seeded weights: the seed example of
`batchpilot export` (README, "From a PyTorch model to a service").

    batchpilot export --factory examples.pytorch.cifar_cnn:build --input-shape 3,32,32 --name cifar --out models
"""

from __future__ import annotations

import torch
from torch import nn


def build(seed: int = 0) -> nn.Module:
    """The network, weights drawn from `seed` (train it for real use; the serving path is the same)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 16x16
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 8x8
        nn.Flatten(1),  # keeps the batch dimension whatever its size (x.view(2, -1) would fix it)
        nn.Linear(32 * 8 * 8, 10),
    ).eval()

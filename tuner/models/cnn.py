"""Small convolutional classifier: conv blocks, then a dense layer.

It reads the same flat feature vectors as the MLP and reshapes them to ``image_shape``,
so that both models serve the same input.
"""

from __future__ import annotations

import torch
from torch import nn

from tuner.models.base import ClassifierModule


class CNNClassifier(ClassifierModule):
    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, channels: int = 16,
                 depth: int = 2, kernel_size: int = 3, hidden: int = 64, dropout: float = 0.0,
                 **optim):
        super().__init__(**optim)
        self.image_shape = tuple(image_shape)
        if len(self.image_shape) != 3:
            raise ValueError(f"model.image_shape must be [channels, height, width], got "
                             f"{list(image_shape)}")
        if kernel_size % 2 == 0:
            raise ValueError(f"model.kernel_size must be odd (same padding), got {kernel_size}")
        blocks: list[nn.Module] = []
        c_in, side = self.image_shape[0], min(self.image_shape[1:])
        for i in range(depth):
            c_out = channels * 2 ** i
            blocks += [nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2), nn.ReLU()]
            if side >= 2:  # pool while there is something left to pool
                blocks.append(nn.MaxPool2d(2))
                side //= 2
            c_in = c_out
        self.features = nn.Sequential(*blocks, nn.Flatten())
        with torch.no_grad():
            flat = self.features(torch.zeros(1, *self.image_shape)).shape[1]
        self.head = nn.Sequential(nn.Linear(flat, hidden), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.head(self.features(x.reshape(-1, *self.image_shape)))

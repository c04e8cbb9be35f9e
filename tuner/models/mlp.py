"""Multi-layer perceptron classifier over flat feature vectors."""

from __future__ import annotations

from torch import nn

from tuner.models.base import ACTIVATIONS, ClassifierModule
from tuner.models.optim import choice_name


class MLPClassifier(ClassifierModule):
    def __init__(self, input_dim: int, num_classes: int, width: int = 128, depth: int = 2,
                 dropout: float = 0.0, activation: str = "relu", **optim):
        super().__init__(**optim)
        activation = choice_name(activation)
        if activation not in ACTIVATIONS:
            raise ValueError(f"model.activation={activation!r} must be one of "
                             f"{', '.join(ACTIVATIONS)}")
        if width < 1 or depth < 0:
            raise ValueError(f"model.width ({width}) must be >= 1 and model.depth ({depth}) >= 0")
        layers: list[nn.Module] = []
        fan_in = input_dim
        for _ in range(depth):
            layers += [nn.Linear(fan_in, width), ACTIVATIONS[activation](), nn.Dropout(dropout)]
            fan_in = width
        layers.append(nn.Linear(fan_in, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)

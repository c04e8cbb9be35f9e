"""A plain dense network, built from the model config's ``net`` entry (a nested _target_)."""

from torch import nn


class DenseNet(nn.Module):
    def __init__(self, input_size: int = 64, hidden: int = 64, output_size: int = 10,
                 dropout: float = 0.1):
        super().__init__()
        self.model = nn.Sequential(
            nn.Linear(input_size, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, output_size))

    def forward(self, x):
        return self.model(x)

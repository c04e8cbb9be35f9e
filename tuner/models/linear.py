"""Linear regression trained by gradient descent on mean squared error."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from tuner.models.base import SupervisedModule


class LinearRegression(SupervisedModule):
    """Logs train_loss and val_loss (MSE) and val_rmse per epoch."""

    def __init__(self, input_dim: int, **optim):
        super().__init__(**optim)
        self.linear = nn.Linear(input_dim, 1)

    def forward(self, x):
        return self.linear(x)

    def loss(self, output, target):
        return F.mse_loss(output, target)

    def on_validation_epoch_end(self) -> None:
        mse = self.val_means.mean("val_loss")  # read before the base class logs and clears
        if mse is not None:
            self.log("val_rmse", mse.sqrt())
        super().on_validation_epoch_end()

"""Linear regression trained by gradient descent on mean squared error."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from tuner.models.base import TunableModule


class LinearRegression(TunableModule):
    """Logs train_loss and val_loss (MSE) and val_rmse per epoch."""

    def __init__(self, input_dim: int, **optim):
        super().__init__(**optim)
        self.linear = nn.Linear(input_dim, 1)

    def forward(self, x):
        return self.linear(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.mse_loss(self(x), y)
        self.train_means.add("train_loss", loss, len(y))
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.val_means.add("val_loss", F.mse_loss(self(x), y), len(y))

    def on_validation_epoch_end(self) -> None:
        if "val_loss" in self.val_means.sums:
            self.log("val_rmse", (self.val_means.sums["val_loss"]
                                  / self.val_means.counts["val_loss"]).sqrt())
        super().on_validation_epoch_end()

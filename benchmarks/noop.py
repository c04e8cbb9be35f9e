"""A model and data with nothing to train, so a sweep of them costs only the platform.

The validation metric is a known function of the searched value, so the sampler has
something to optimise and the best trial (whose model is logged) changes now and then,
as in a real sweep.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch

from tuner.data.batches import TensorBatches


class NoopData(pl.LightningDataModule):
    """One batch of one row, for training and for validation."""

    def __init__(self, batch_size: int = 1):
        super().__init__()
        self.rows = (torch.zeros(1, 1), torch.zeros(1))

    def train_dataloader(self):
        return TensorBatches(*self.rows, batch_size=1)

    def val_dataloader(self):
        return TensorBatches(*self.rows, batch_size=1)


class NoopModule(pl.LightningModule):
    def __init__(self, x: float = 0.0):
        super().__init__()
        self.x = x
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, inputs):
        return inputs * self.weight

    def training_step(self, batch, batch_idx):
        return None  # no loss: Lightning skips backward and the optimizer step

    def validation_step(self, batch, batch_idx):
        self.log("score", (self.x - 0.3) ** 2)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)

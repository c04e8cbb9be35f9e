"""A user's own project, written the way the Lightning docs teach (the "LightningModule"
and "LightningDataModule" pages): a DataModule that hands out ``DataLoader``s, a module
that calls ``self.log`` on every training step and in validation, ``save_hyperparameters``
and one optimizer. Nothing in it knows about tuner or Optuna.

benchmarks/user_module.py sweeps it with `tuner sweep --config-dir` and the common way.
"""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset


class DigitsData(pl.LightningDataModule):
    def __init__(self, batch_size: int = 64):
        super().__init__()
        self.batch_size = batch_size

    def setup(self, stage: str | None = None):
        x, y = load_digits(return_X_y=True)
        x = (x / 16.0).astype(np.float32)
        x_tr, x_va, y_tr, y_va = train_test_split(x, y, test_size=0.2, stratify=y,
                                                  random_state=0)
        self.train_set = TensorDataset(torch.from_numpy(x_tr), torch.from_numpy(y_tr))
        self.val_set = TensorDataset(torch.from_numpy(x_va), torch.from_numpy(y_va))

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=self.batch_size)


class DigitsClassifier(pl.LightningModule):
    def __init__(self, width: int = 128, dropout: float = 0.1, lr: float = 1e-3,
                 weight_decay: float = 0.0):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(
            nn.Linear(64, width), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(width, width), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(width, 10))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val_loss", F.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(dim=1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr,
                                weight_decay=self.hparams.weight_decay)

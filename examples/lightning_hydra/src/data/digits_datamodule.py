"""scikit-learn's bundled handwritten digits (1797 images of 8x8 pixels): no download."""

import torch
from lightning import LightningDataModule
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset, random_split


class DigitsDataModule(LightningDataModule):
    def __init__(self, batch_size: int = 64, val_size: int = 360, seed: int = 0):
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.train_set = self.val_set = None

    def setup(self, stage=None):
        if self.train_set is None:
            x, y = load_digits(return_X_y=True)
            data = TensorDataset(torch.tensor(x / 16.0, dtype=torch.float32),
                                 torch.tensor(y, dtype=torch.long))
            generator = torch.Generator().manual_seed(self.hparams.seed)
            sizes = [len(data) - self.hparams.val_size, self.hparams.val_size]
            self.train_set, self.val_set = random_split(data, sizes, generator=generator)

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=256)

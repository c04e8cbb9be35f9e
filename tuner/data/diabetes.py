"""scikit-learn's bundled diabetes regression data (442 rows, 10 features); no download.

Features and target are standardised with the training rows' mean and deviation, so a
validation MSE of 1.0 is what predicting the mean scores.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split

from tuner.data.in_memory import InMemoryDataModule, check_fraction


@lru_cache(maxsize=8)
def _split(val_fraction: float, split_seed: int):
    x, y = load_diabetes(return_X_y=True, scaled=False)
    x_tr, x_va, y_tr, y_va = train_test_split(x, y, test_size=val_fraction,
                                              random_state=split_seed)
    x_mean, x_std = x_tr.mean(axis=0), x_tr.std(axis=0)
    y_mean, y_std = y_tr.mean(), y_tr.std()

    def tensors(xs, ys):
        xs = ((xs - x_mean) / x_std).astype(np.float32)
        ys = ((ys - y_mean) / y_std).astype(np.float32)[:, None]
        return torch.from_numpy(xs), torch.from_numpy(ys)

    return tensors(x_tr, y_tr), tensors(x_va, y_va)


class DiabetesDataModule(InMemoryDataModule):
    def __init__(self, batch_size: int = 32, val_fraction: float = 0.2, split_seed: int = 0,
                 num_features: int = 10):
        super().__init__(batch_size)
        self.num_features = num_features
        check_fraction("data.val_fraction", val_fraction)
        self.val_fraction = val_fraction
        self.split_seed = split_seed

    def load(self):
        return _split(self.val_fraction, self.split_seed)

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
from tuner.data.serving import Affine


@lru_cache(maxsize=8)
def _raw_split(val_fraction: float, split_seed: int):
    x, y = load_diabetes(return_X_y=True, scaled=False)
    return train_test_split(x, y, test_size=val_fraction, random_state=split_seed)


def _statistics(val_fraction: float, split_seed: int):
    """The training rows' (x mean, x deviation, y mean, y deviation)."""
    x_tr, _, y_tr, _ = _raw_split(val_fraction, split_seed)
    return x_tr.mean(axis=0), x_tr.std(axis=0), y_tr.mean(), y_tr.std()


@lru_cache(maxsize=8)
def _split(val_fraction: float, split_seed: int):
    x_tr, x_va, y_tr, y_va = _raw_split(val_fraction, split_seed)
    x_mean, x_std, y_mean, y_std = _statistics(val_fraction, split_seed)

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

    def serving_transforms(self):
        """A served model takes the raw measurements and answers in the target's units."""
        x_mean, x_std, y_mean, y_std = _statistics(self.val_fraction, self.split_seed)
        return (Affine((1.0 / x_std).astype(np.float32), (-x_mean / x_std).astype(np.float32)),
                Affine(float(y_std), float(y_mean)))

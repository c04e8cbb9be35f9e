"""scikit-learn's bundled handwritten digits (8x8 images, 10 classes); no download."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from tuner.data.in_memory import InMemoryDataModule, check_fraction
from tuner.data.serving import Affine

PIXEL_MAX = 16.0  # the bundled set's pixel intensities are 0..16


@lru_cache(maxsize=8)  # trials in one process share the (read-only) tensors
def _split(val_fraction: float, split_seed: int):
    x, y = load_digits(return_X_y=True)
    x = (x / PIXEL_MAX).astype(np.float32)  # pixel intensities 0..16 -> [0, 1]
    x_tr, x_va, y_tr, y_va = train_test_split(x, y, test_size=val_fraction, stratify=y,
                                              random_state=split_seed)
    as_tensors = (torch.from_numpy, lambda a: torch.from_numpy(a.astype(np.int64)))
    return ((as_tensors[0](x_tr), as_tensors[1](y_tr)),
            (as_tensors[0](x_va), as_tensors[1](y_va)))


class DigitsDataModule(InMemoryDataModule):
    """Flat 64-feature vectors and class labels; models reshape if they need images."""

    def __init__(self, batch_size: int = 64, val_fraction: float = 0.2, split_seed: int = 0,
                 num_features: int = 64, num_classes: int = 10,
                 image_shape: tuple[int, ...] = (1, 8, 8)):
        super().__init__(batch_size)
        # Shape facts that model configs interpolate (e.g. ${data.num_features}).
        self.num_features, self.num_classes = num_features, num_classes
        self.image_shape = tuple(image_shape)
        check_fraction("data.val_fraction", val_fraction)
        self.val_fraction = val_fraction
        self.split_seed = split_seed

    def load(self):
        return _split(self.val_fraction, self.split_seed)

    def serving_transforms(self):
        return Affine(1.0 / PIXEL_MAX), None  # a served model takes the 0..16 pixels

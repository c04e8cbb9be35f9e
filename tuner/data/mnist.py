"""MNIST from the IDX files in a folder you give; nothing is downloaded.

The folder must hold ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte``
(also accepted: ``train-images.idx3-ubyte`` naming, and a ``.gz`` suffix). The t10k
files are used for ``test`` only, so validation rows come out of the training files.
"""

from __future__ import annotations

import gzip
import struct
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from tuner.data.batches import TensorBatches
from tuner.data.in_memory import InMemoryDataModule, check_fraction
from tuner.data.serving import Affine

PIXEL_MAX = 255.0  # IDX pixels are bytes

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into an array of its declared shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    body = data[4 + 4 * ndim:]
    if len(body) != expected:
        raise ValueError(f"{path}: header promises {expected} bytes of data, file has "
                         f"{len(body)}")
    return np.frombuffer(body, dtype=dtype).reshape(shape)


def find_idx(folder: Path, split: str, kind: str) -> Path | None:
    """The IDX file for split 'train'/'t10k' and kind 'images'/'labels', if present."""
    dims = 3 if kind == "images" else 1
    for name in (f"{split}-{kind}-idx{dims}-ubyte", f"{split}-{kind}.idx{dims}-ubyte"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _load_pair(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    paths = [find_idx(folder, split, kind) for kind in ("images", "labels")]
    if None in paths:
        raise FileNotFoundError(
            f"data.path={folder}: no {split}-images-idx3-ubyte / {split}-labels-idx1-ubyte "
            "(optionally .gz) there; point data.path at the folder holding the MNIST IDX files")
    images, labels = (read_idx(p) for p in paths)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"data.path={folder}: {split} images {images.shape} and labels "
                         f"{labels.shape} do not match (expected N x H x W and N)")
    x = torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / PIXEL_MAX)
    return x, torch.from_numpy(labels.astype(np.int64))


@lru_cache(maxsize=4)
def _split(folder: str, val_fraction: float, split_seed: int, max_train: int | None):
    x, y = _load_pair(Path(folder), "train")
    if max_train is not None:
        x, y = x[:max_train], y[:max_train]
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(split_seed))
    n_val = max(1, round(len(x) * val_fraction))
    val, train = order[:n_val], order[n_val:]
    return (x[train], y[train]), (x[val], y[val])


class MnistDataModule(InMemoryDataModule):
    def __init__(self, path: str, batch_size: int = 128, val_fraction: float = 0.1,
                 split_seed: int = 0, max_train_samples: int | None = None,
                 num_features: int = 784, num_classes: int = 10,
                 image_shape: tuple[int, ...] = (1, 28, 28)):
        super().__init__(batch_size)
        check_fraction("data.val_fraction", val_fraction)
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"data.path={path}: no such folder; point data.path at "
                                    "the folder holding the MNIST IDX files")
        self.folder = folder.resolve()
        self.val_fraction, self.split_seed = val_fraction, split_seed
        self.max_train_samples = max_train_samples
        self.num_features, self.num_classes = num_features, num_classes
        self.image_shape = tuple(image_shape)

    def load(self):
        return _split(str(self.folder), self.val_fraction, self.split_seed,
                      self.max_train_samples)

    def serving_transforms(self):
        return Affine(1.0 / PIXEL_MAX), None  # a served model takes the 0..255 pixels

    def test_dataloader(self) -> TensorBatches:
        x, y = _load_pair(self.folder, "t10k")
        return TensorBatches(x, y, batch_size=max(self.batch_size, 512))

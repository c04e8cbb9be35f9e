"""Batches sliced straight out of tensors held in memory.

For data that fits in memory a DataLoader can cost more than the model: it indexes one
sample at a time and collates them again, where slicing whole batches out of tensors
does neither. Lightning accepts any re-iterable with a length as a dataloader, so this
is all a small data set needs.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


class TensorBatches:
    """Iterate over aligned tensors in batches of ``batch_size`` rows.

    With ``shuffle`` the rows are permuted afresh each epoch from torch's global
    generator, which each trial seeds, so a trial's seed fixes its data order.
    """

    def __init__(self, *tensors: torch.Tensor, batch_size: int, shuffle: bool = False,
                 drop_last: bool = False):
        if not tensors or any(len(t) != len(tensors[0]) for t in tensors):
            raise ValueError("TensorBatches needs tensors with the same number of rows")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last

    def __len__(self) -> int:
        n = len(self.tensors[0])
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        n = len(self.tensors[0])
        if self.shuffle:
            order = torch.randperm(n)
            tensors = tuple(t[order] for t in self.tensors)  # one gather per epoch
        else:
            tensors = self.tensors
        for i in range(len(self)):
            start = i * self.batch_size
            yield tuple(t[start:start + self.batch_size] for t in tensors)

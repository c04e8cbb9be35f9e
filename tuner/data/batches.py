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

    Under DDP (``world_size`` > 1) each rank takes every ``world_size``-th row of the
    epoch's order, starting at its ``rank``, as a DistributedSampler would. Every rank
    seeds alike, so they draw the same permutation and their shards never overlap; the
    rows left over after an equal split are dropped, so that every rank takes the same
    number of steps (a rank with one more step would wait forever in its all-reduce).
    """

    def __init__(self, *tensors: torch.Tensor, batch_size: int, shuffle: bool = False,
                 drop_last: bool = False, rank: int = 0, world_size: int = 1):
        if not tensors or any(len(t) != len(tensors[0]) for t in tensors):
            raise ValueError("TensorBatches needs tensors with the same number of rows")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in a world of {world_size}")
        self.tensors = tensors
        self.rank, self.world_size = rank, world_size
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last

    @property
    def rows(self) -> int:
        """Rows this rank iterates over per epoch."""
        return len(self.tensors[0]) // self.world_size

    def __len__(self) -> int:
        n = self.rows
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        n = len(self.tensors[0])
        if self.shuffle:
            order = torch.randperm(n)
        elif self.world_size > 1:
            order = torch.arange(n)
        else:
            order = None
        if order is not None and self.world_size > 1:
            order = order[self.rank:self.rows * self.world_size:self.world_size]
        # One gather per epoch, then slices: no per-sample indexing or collation.
        tensors = self.tensors if order is None else tuple(t[order] for t in self.tensors)
        for i in range(len(self)):
            start = i * self.batch_size
            yield tuple(t[start:start + self.batch_size] for t in tensors)

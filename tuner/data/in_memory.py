"""A LightningDataModule for data sets that fit in memory.

Subclasses load their tensors once (``load``); batches are sliced straight from them
(:class:`~tuner.data.batches.TensorBatches`). The split into training and validation
rows is fixed by ``split_seed`` so that every trial of a study validates on the same
rows, and is never affected by the trial's own seed.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch

from tuner.data.batches import TensorBatches

# Validation batches do not change what is learnt, so they can be large: fewer steps.
MIN_VAL_BATCH = 512


class InMemoryDataModule(pl.LightningDataModule):
    def __init__(self, batch_size: int):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.train_tensors: tuple[torch.Tensor, ...] | None = None
        self.val_tensors: tuple[torch.Tensor, ...] | None = None

    def load(self) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """Return (training tensors, validation tensors); rows align within each."""
        raise NotImplementedError

    def serving_transforms(self) -> tuple[torch.nn.Module | None, torch.nn.Module | None]:
        """Raw input -> the model's input, the model's output -> raw units, for a served
        model (tuner.data.serving); None where the data is used as it comes."""
        return None, None

    def setup(self, stage: str | None = None) -> None:
        if self.train_tensors is None:
            self.train_tensors, self.val_tensors = self.load()

    def train_dataloader(self) -> TensorBatches:
        # Under DDP each rank trains on its own shard (batch_size is per rank, as with
        # Lightning's DistributedSampler: the effective batch is world_size x batch_size).
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        return TensorBatches(*self.train_tensors, batch_size=self.batch_size, shuffle=True,
                             rank=rank, world_size=world)

    def val_dataloader(self) -> TensorBatches:
        # Not sharded: every rank validates on all rows, so the metric rank 0 reports is
        # the metric of the whole validation set without a cross-rank reduction.
        return TensorBatches(*self.val_tensors, batch_size=max(self.batch_size, MIN_VAL_BATCH))


def check_fraction(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be between 0 and 1 (exclusive), got {value}")

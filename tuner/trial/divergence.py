"""A trial whose training diverged stops, whatever its objective says.

The objective can stay finite while the model is gone: a classifier whose loss and
weights are NaN predicts one class, and its validation accuracy reads 0.1, a number like
any other. So the training loss of every batch and, at the end of each training epoch,
the weights are checked too: once either is NaN or infinite the trial stops, PRUNED
with the reason (FAIL for a multi-objective study, which Optuna cannot prune), and its
model is never kept, exported or registered (tuner.trial.model also refuses weights
that are not finite).

The loss check adds no synchronisation per batch (on a GPU, reading a value waits for
the device): the batches' verdicts are folded into one tensor on the device and read
once per epoch, with the weights. Under DDP a rank that diverged stops every rank.
"""

from __future__ import annotations

from collections.abc import Mapping

import lightning.pytorch as pl
import torch


class DivergenceStop(pl.Callback):
    def __init__(self) -> None:
        self.reason: str | None = None  # why it stopped, once it has
        self.at_epoch: int | None = None
        self._loss_bad: torch.Tensor | None = None  # this epoch's batches, folded

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs, batch, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor):
            bad = ~torch.isfinite(loss.detach()).all()
            self._loss_bad = bad if self._loss_bad is None else self._loss_bad | bad

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loss_bad = self._loss_bad is not None and bool(self._loss_bad)
        self._loss_bad = None
        weights_bad = not loss_bad and not finite_weights(pl_module)
        bad = loss_bad or weights_bad
        if trainer.world_size > 1:  # one rank's NaN stops them all, after the same epoch
            bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if not bad:
            return
        epoch = trainer.current_epoch + 1
        what = "training loss" if loss_bad else "weights" if weights_bad else "training"
        self.reason = f"the {what} became NaN or infinite in epoch {epoch}"
        self.at_epoch = epoch
        trainer.should_stop = True

    @property
    def diverged(self) -> bool:
        return self.reason is not None


def finite_weights(module: torch.nn.Module) -> bool:
    """Whether every floating-point parameter and buffer of ``module`` is finite (one
    read of the device for all of them)."""
    checks = [torch.isfinite(t.detach()).all() for t in
              (*module.parameters(), *module.buffers()) if t.is_floating_point()]
    return bool(torch.stack(checks).all()) if checks else True

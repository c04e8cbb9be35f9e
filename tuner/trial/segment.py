"""A PBT segment in its slot: epochs [start, end) from the parent's state, saved at the end.

The segment's trial trains the config's whole schedule length (``trainer.max_epochs``,
so that a learning-rate schedule spans the member's whole life, not one segment) and
stops after its last epoch (:class:`SegmentEnd`), where it saves its whole state:
weights, optimizer, schedule, loop counters and random state (the state of
tuner.trial.checkpoints, which puts the random state back when a child resumes from it).

A child resumes from its copy of the parent's checkpoint with Lightning's
``fit(ckpt_path=...)``, which restores the parent's optimizer ``param_groups``: its
learning rate, weight decay and momentum, not the child's. :class:`AdoptHyperparameters`
puts the child's values there once Lightning has restored them (a scheduled learning
rate keeps its place on the schedule, scaled to the child's peak). Values that need
no optimizer (dropout, batch size, clipping) come with the child's config, from which
its module, data and trainer are built.
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning.pytorch as pl

from tuner.core.upstream import fresh_optimizers
from tuner.trial.checkpoints import ResumeCheckpoint
from tuner.trial.order import SegmentOrder
from tuner.trial.resume import partial_path, sha256_of

NOT_HYPERPARAMETERS = ("params", "lr", "initial_lr")  # a param group's keys set otherwise


class SegmentEnd(ResumeCheckpoint):
    """Stops the fit after the segment's last epoch and saves the whole state there;
    ``sha256``: the saved file's hash, for the children that copy it. Its metric rows
    stay with its own run: a child logs to a run of its own."""

    carries_rows = False

    def __init__(self, segment: SegmentOrder):
        super().__init__(segment.end_checkpoint.parent, every_s=None)
        self.segment = segment
        self.sha256: str | None = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch + 1 < self.segment.end_epoch or trainer.should_stop:
            return  # not its last epoch; or stopped (a NaN): nothing to hand on
        trainer.should_stop = True
        self.folder.mkdir(parents=True, exist_ok=True)
        self._epochs = trainer.current_epoch + 1
        path = self.segment.end_checkpoint
        partial = partial_path(path)
        trainer.save_checkpoint(partial, weights_only=False)  # every rank; rank 0 writes
        if trainer.is_global_zero:
            with partial.open("rb") as written:
                os.fsync(written.fileno())
            os.replace(partial, path)
            self.sha256 = sha256_of(path)


def segment_inputs(segment: SegmentOrder
                   ) -> tuple[SegmentEnd, Path | None, tuple[pl.Callback, ...]]:
    """What a fit of ``segment`` takes (tuner.trial.fit.FitInputs): the callback that ends
    and saves it, the checkpoint it resumes from, and the child's own callbacks."""
    start = segment.start_checkpoint
    return SegmentEnd(segment), start, (AdoptHyperparameters(),) if start is not None else ()


class AdoptHyperparameters(pl.Callback):
    """After Lightning restored the parent's optimizers and schedules: the child's own
    hyperparameters on every param group, and its peak learning rate as each schedule's
    base (the schedule's current factor kept)."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        optimizers, scheduler_configs = fresh_optimizers(pl_module)
        scheduled = {id(config.scheduler.optimizer) for config in trainer.lr_scheduler_configs}
        for restored, fresh in zip(trainer.optimizers, optimizers, strict=True):
            for group, own in zip(restored.param_groups, fresh.param_groups, strict=True):
                for key, value in own.items():
                    if key not in NOT_HYPERPARAMETERS:
                        group[key] = value
                peak = own.get("initial_lr", own["lr"])
                if id(restored) in scheduled and group.get("initial_lr"):
                    group["lr"] = peak * group["lr"] / group["initial_lr"]
                else:
                    group["lr"] = peak
                if "initial_lr" in group:
                    group["initial_lr"] = peak
        for restored, fresh in zip(trainer.lr_scheduler_configs, scheduler_configs,
                                   strict=True):
            restored.scheduler.base_lrs = list(fresh.scheduler.base_lrs)

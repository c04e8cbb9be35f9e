"""The checkpoint a long trial saves, so that a repeat can resume it (tuner.trial.resume).

At the end of a training epoch, once at least ``every_s`` seconds have passed since the
fit started or since the last save, the whole training state (weights, optimizer and
scheduler, loop counters, and the random number generators) goes to a new file in the
chain's folder, which its record then names (tuner.trial.resume.commit): a kill mid-
write leaves the previous checkpoint and its record whole. Fast trials never pay for it:
a trial shorter than ``every_s`` saves nothing, and the last epoch never saves (the
trial is over), nor does an epoch after which the trial stops (pruned).

Saving the random state is what makes a resumed trial train exactly as it would have
without the interruption (on CPU; GPU kernels may be nondeterministic anyway): Lightning
restores weights, optimizer and counters, but not the generators that shuffle the next
epoch and draw dropout masks.

The checkpoint is saved where Lightning's own ``ModelCheckpoint(save_on_train_epoch_end=
True)`` saves it, so a resume starts with the next epoch. Schedulers stepped per epoch
(``interval: epoch``) step after that point, so a resume loses one of their steps, as
with Lightning's own checkpoints; the built-in models step their schedules per batch.

Under DDP every rank takes part in the save (rank 0 writes), on rank 0's clock.

The checkpoint also keeps the metric rows the trial's logger took so far: a kill may
catch the last epochs' rows on their way to the run after their checkpoint was saved,
and the repeat then writes those the run lacks (tuner.trial.metrics_logger).
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch

from tuner.trial.metrics_logger import BatchLogger
from tuner.trial.resume import checkpoint_file, commit, partial_path

STATE_KEY = "tuner.resume"  # the callback's entry in a Lightning checkpoint


class ResumeCheckpoint(pl.Callback):
    """Saves the trial's state in ``folder`` (see the module docstring); ``every_s=None``
    never saves. When the fit resumes from such a checkpoint, it puts the random state
    back before the first epoch and has the logger write the rows the run lacks."""

    carries_rows = True  # the metric rows so far go with the state (not to a PBT child)

    def __init__(self, folder: Path, every_s: float | None):
        self.folder = Path(folder)
        self.every_s = every_s
        self._last_save = time.monotonic()
        self._epochs = 0  # epochs trained when the checkpoint being written was taken
        self._restored_rng: dict | None = None
        self._restored_rows: list | None = None
        self._logger: BatchLogger | None = None

    @property
    def state_key(self) -> str:
        return STATE_KEY  # one name whatever the subclass: a resume finds its state

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_save = time.monotonic()
        self._logger = next((logger for logger in trainer.loggers
                             if isinstance(logger, BatchLogger)), None)

    # -- resuming ----------------------------------------------------------------------

    def state_dict(self) -> dict:
        state = {"epochs": self._epochs, "rng": _rng_state()}
        if self.carries_rows and self._logger is not None:
            state["rows"] = self._logger.rows()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        # Applied when training starts: Lightning restores the rest of the state after
        # this call, and nothing may draw from the generators once they are set.
        self._restored_rng = state_dict.get("rng")
        self._restored_rows = state_dict.get("rows") if self.carries_rows else None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._restored_rows and self._logger is not None:
            self._logger.resend(self._restored_rows)
        self._restored_rows = None
        if self._restored_rng is not None:
            _set_rng_state(self._restored_rng)
            self._restored_rng = None

    # -- saving ------------------------------------------------------------------------

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.every_s is None:
            return
        due = (time.monotonic() - self._last_save >= self.every_s
               and not trainer.should_stop and not _last_epoch(trainer))
        if trainer.world_size > 1:
            due = trainer.strategy.broadcast(due, src=0)  # every rank must join the save
        if not due:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        self._epochs = trainer.current_epoch + 1
        path = checkpoint_file(self.folder, self._epochs)
        partial = partial_path(path)
        trainer.save_checkpoint(partial, weights_only=False)  # every rank; rank 0 writes
        if trainer.is_global_zero:
            with partial.open("rb") as written:
                os.fsync(written.fileno())  # on disk before its record names it
            os.replace(partial, path)
            commit(path, self._epochs)
        self._last_save = time.monotonic()


def _last_epoch(trainer: pl.Trainer) -> bool:
    limit = trainer.max_epochs
    return limit is not None and limit >= 0 and trainer.current_epoch + 1 >= limit


def _rng_state() -> dict:
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             # As a tensor, so that the checkpoint loads with weights_only=True.
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss,
                       cached]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)

"""What a slot is told to train: everything one trial needs, decided by its driver.

The driver (tuner.launch.driver) claims the trial, samples it, builds its config,
creates its MLflow run (or takes over the run of the attempt it resumes) and hands a
free slot an :class:`Order`. The slot trains it (tuner.trial.train) and answers with a
:class:`tuner.core.results.TrialResult`; it asks the driver nothing meanwhile. An order
crosses a pipe, so it holds plain values and the trial's resolved config, nothing of
torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig


@dataclass(frozen=True)
class ResumeFrom:
    """A repeat of a trial cut short continues from its chain's checkpoint."""

    checkpoint: Path  # verified against its record by the driver (tuner.trial.resume)
    epochs: int  # epochs it had trained
    logged_steps: dict[str, int] = field(default_factory=dict)  # the run's last step per metric


@dataclass(frozen=True)
class SegmentOrder:
    """A segment of population-based training (tuner.study.population): epochs
    [start_epoch, end_epoch) of a member, from its parent's checkpoint (copied into the
    trial's folder by the driver; None in generation 0), saved at its end."""

    start_epoch: int
    end_epoch: int
    end_checkpoint: Path
    start_checkpoint: Path | None = None


@dataclass(frozen=True)
class Order:
    trial_id: int  # Optuna's id: the slot rebuilds the trial from the storage by it
    number: int
    cfg: DictConfig  # the trial's config: sampled values applied, resolved
    seed: int
    run_id: str  # the trial's MLflow run (its metric batches go there, via the driver)
    trial_dir: Path  # Lightning's folder for the trial
    checkpoint_dir: Path | None  # where it saves resume checkpoints; None: it does not
    resume: ResumeFrom | None = None  # where a repeat resumes; None: from epoch 0
    best_value: float | None = None  # keep the weights if it completes beating this
    keeps_weights: bool = False  # whether a new best keeps its weights (tracking.log_models)
    # The study's MLflow experiment and parent run: a slot whose driver died writes its
    # trial's last records itself (tuner.launch.orphan).
    experiment_id: str | None = None
    parent_run_id: str | None = None
    segment: SegmentOrder | None = None  # strategy=pbt: the epochs it trains, and from where

    def beats_best(self, value: float, direction: str) -> bool:
        from tuner.core.results import is_better

        return self.keeps_weights and (self.best_value is None
                                       or is_better(value, self.best_value, direction))

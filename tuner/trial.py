"""One trial: sample -> config -> Lightning objects -> fit -> objective values.

The trial's own seed is ``seed + trial.number``: two trials with the same params still
differ by seed (as repeated runs would), and a trial is reproducible from its number.

A repeat of a trial cut short from outside resumes from its chain's last checkpoint
and continues its MLflow run (:mod:`tuner.resume`); any other trial starts at epoch 0
with a run of its own.

Failures are results, not exceptions: anything a trial raises (a bad sample, a shape
error, a NaN objective, CUDA out of memory) comes back as a FAIL result with the
reason, so that the sweep goes on. ``KeyboardInterrupt`` and ``SystemExit`` are not
caught here; the sweep records them as interruptions.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import optuna
from omegaconf import OmegaConf
from optuna.trial import TrialState

from tuner import resume
from tuner.checkpoints import ResumeCheckpoint, checkpoint_epochs
from tuner.masking import mask
from tuner.outcome import TrialResult, reason_of
from tuner.plan import SweepPlan
from tuner.pruning import OptunaPruning
from tuner.retries import root_of
from tuner.tracking import tags
from tuner.tracking.runs import Tracker
from tuner.training import build_objects, build_trainer, example_input

MODEL_WAITS = ("not logged yet: the MLflow tracking server did not answer; its weights wait "
               "in the outbox, and `tuner sync` (or the end of the sweep) logs it")


def run_trial(plan: SweepPlan, trial: optuna.Trial, tracker: Tracker,
              beats_best: Callable[[float], bool]) -> TrialResult:
    """Train one trial; its MLflow run is created here and left for the caller to end."""
    start = time.monotonic()
    result = TrialResult(trial.number, TrialState.FAIL)
    try:
        params = plan.space.sample(trial)
        cfg = plan.trial_config(params)
        # A repeat of a failed trial (tuner.retries) trains with its first attempt's seed.
        first = root_of(trial)
        seed = plan.cfg.seed + first
        config_yaml = mask(OmegaConf.to_yaml(cfg))
        trial.set_user_attr(tags.SEED_ATTR, seed)
        trial.set_user_attr(tags.CONFIG_ATTR, config_yaml)
        point = _resume_point(plan, trial, tracker)
        if point is not None:  # a repeat of a trial cut short: continue its run
            result.run_id = point.run_id
        else:
            resume.discard(plan, trial)  # a fresh start: an older checkpoint is not its run's
            result.run_id = tracker.start_trial(
                trial.number, {**params, "seed": seed}, config_yaml,
                retry_of=first if first != trial.number else None)
            trial.set_user_attr(tags.RUN_ID_ATTR, result.run_id)  # a resume's: record_resume
        if plan.ranks_per_trial > 1:
            from tuner.ddp import fit_in_ranks

            fit_in_ranks(plan, trial, tracker, result, point)
        else:
            _fit(plan, trial, tracker, cfg, config_yaml, seed, result, beats_best, point)
    except Exception as error:
        result.state, result.values = TrialState.FAIL, None
        result.reason = reason_of(error)
        if result.run_id is not None:
            tracker.log_error(result.run_id, traceback.format_exc())
    result.seconds = time.monotonic() - start
    return result


def _resume_point(plan: SweepPlan, trial: optuna.Trial,
                  tracker: Tracker) -> resume.ResumePoint | None:
    """Where this trial resumes (tuner.resume), with the resume recorded and its run
    taken over; None to start at epoch 0, with the reason on the trial when a checkpoint
    was there but cannot be used."""
    point = resume.find(plan, trial)
    if point is None:
        return None
    try:
        point = replace(point, epochs=checkpoint_epochs(point.checkpoint))
    except Exception as error:
        why = reason_of(error)
    else:
        why = tracker.why_not_resume(point.run_id, point.attempts)
    if why is not None:
        trial.set_user_attr(tags.RESUME_ERROR_ATTR, why)
        return None
    # The trial points at the run before the run is RUNNING again: a kill in between
    # leaves a run that whoever reaps this trial finds and ends.
    resume.record_resume(trial, tracker, point)
    tracker.resume_trial(point.run_id, trial.number, root_of(trial))
    return point


def _fit(plan, trial, tracker, cfg, config_yaml, seed, result, beats_best, point) -> None:
    checkpoint = None
    if resume.supported(plan):
        checkpoint = ResumeCheckpoint(resume.checkpoint_path(plan, trial),
                                      plan.cfg.resume_checkpoint_s)
    fitted = fit(cfg, seed, trial=trial, metrics=plan.metrics,
                 reports_epochs=plan.reports_epochs,
                 logger=tracker.trial_logger(result.run_id, resumed=point is not None),
                 root_dir=plan.trial_dir(trial.number), checkpoint=checkpoint,
                 resume_from=None if point is None else point.checkpoint)
    result.state, result.values, result.pruned_at = fitted.state, fitted.values, fitted.pruned_at
    if (fitted.state == TrialState.COMPLETE and plan.cfg.tracking.log_models
            and beats_best(fitted.values[0])):
        log_model(fitted, trial._trial_id, trial.study._storage, result.run_id, tracker,
                  config_yaml)


@dataclass
class Fitted:
    """What ``fit`` left: the outcome, and the objects for logging the model."""

    state: TrialState
    values: list[float] | None
    pruned_at: int | None
    trainer: pl.Trainer
    module: pl.LightningModule
    datamodule: pl.LightningDataModule


def fit(cfg, seed: int, *, trial: optuna.Trial | None, metrics: tuple[str, ...],
        reports_epochs: bool, logger: Any, root_dir: Path,
        checkpoint: ResumeCheckpoint | None = None, resume_from: Path | None = None,
        **trainer_overrides: Any) -> Fitted:
    """Build the trial's objects from its config and train them.

    ``trial`` is the Optuna handle that epoch reports go to; in a DDP trial only rank 0
    has one (the other ranks follow its pruning decision). ``checkpoint`` saves the
    training state now and then; ``resume_from`` is such a checkpoint to continue from.
    Raises on anything that makes the trial FAIL; returns PRUNED or COMPLETE with the
    objective values.
    """
    pl.seed_everything(seed, workers=True, verbose=False)
    datamodule, module = build_objects(cfg)
    pruning = OptunaPruning(trial, metrics[0]) if reports_epochs else None
    callbacks = [c for c in (pruning, checkpoint) if c is not None]
    trainer = build_trainer(cfg.trainer, callbacks=callbacks,
                            logger=logger, root_dir=str(root_dir), **trainer_overrides)
    # weights_only: the checkpoint is read without running pickled code.
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from,
                weights_only=True if resume_from is not None else None)
    if pruning is not None and pruning.pruned:
        return Fitted(TrialState.PRUNED, None, pruning.pruned_at, trainer, module, datamodule)
    values = []
    for metric in metrics:
        value = trainer.callback_metrics.get(metric)
        if value is None:
            raise RuntimeError(f"metric '{metric}' was not logged in validation")
        values.append(float(value))
    bad = [m for m, v in zip(metrics, values, strict=True) if not math.isfinite(v)]
    if bad:
        # Without epoch reports (multi-objective) a diverged trial reaches this point;
        # NaN or inf cannot be ranked, so it fails (README: "what happens when things fail").
        raise FloatingPointError(f"objective {bad[0]} is {values[metrics.index(bad[0])]}")
    return Fitted(TrialState.COMPLETE, values, None, trainer, module, datamodule)


def log_model(fitted: Fitted, trial_id: int, storage, run_id: str, tracker: Tracker,
              config_yaml: str) -> None:
    """Log the trained module to its run; record the URI (or why not) on the trial.
    ``config_yaml``: the trial's config, kept with the weights if they must wait."""
    try:
        uri = tracker.client.log_model(
            run_id, fitted.module, example_input(fitted.module, fitted.datamodule), config_yaml)
    except Exception as error:
        # The trial itself succeeded; only its model cannot be exported (e.g. code
        # torch.export cannot trace). Keep the result, say why there is no model.
        storage.set_trial_user_attr(trial_id, tags.MODEL_ERROR_ATTR, reason_of(error))
        tracker.log_error(run_id, traceback.format_exc())
    else:
        if uri is None:  # the tracking server did not answer: the weights wait in the outbox
            storage.set_trial_user_attr(trial_id, tags.MODEL_ERROR_ATTR, MODEL_WAITS)
        else:
            storage.set_trial_user_attr(trial_id, tags.MODEL_URI_ATTR, uri)

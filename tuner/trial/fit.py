"""The one place a trial's model is trained: config in, Lightning ``Trainer.fit``, result out.

Every process that trains calls :func:`fit` with a :class:`FitInputs`: the slot for a
trial on one process (tuner.trial.train), and each DDP rank for its part of a trial
on several (tuner.launch.rank). What differs between them is in the inputs: only the
process that owns the trial holds the Optuna handle and the MLflow logger, and ranks
started by torchrun get Lightning's layout as trainer overrides.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import optuna
from omegaconf import DictConfig
from optuna.trial import TrialState

from tuner.core import attrs
from tuner.core.floats import as_computed
from tuner.core.measures import compressed, float_metric
from tuner.trial.build import build_callbacks, build_objects, build_trainer
from tuner.trial.checkpoints import ResumeCheckpoint
from tuner.trial.divergence import DivergenceStop
from tuner.trial.fluent_run import fluent_run
from tuner.trial.metrics_logger import BatchLogger
from tuner.trial.pruning import OptunaPruning


@dataclass(frozen=True)
class FitInputs:
    """What one process needs to train (its part of) a trial."""

    cfg: DictConfig  # the trial's config: sampled values applied, resolved
    seed: int
    metrics: tuple[str, ...]  # the study's objectives, read after the last validation
    reports_epochs: bool  # report each epoch's first metric to Optuna (pruning)
    root_dir: Path  # Lightning's folder for the trial
    trial: optuna.Trial | None = None  # where epoch reports go; None on DDP ranks > 0
    logger: Any = False  # the trial run's Lightning logger (a stand-in on ranks > 0)
    checkpoint: ResumeCheckpoint | None = None  # saves the training state now and then
    resume_from: Path | None = None  # such a checkpoint to continue from
    trainer_overrides: Mapping[str, Any] = field(default_factory=dict)
    callbacks: tuple[pl.Callback, ...] = ()  # more of tuner's (a PBT child's, tuner.trial.segment)
    measures: bool = False  # compress the model once it completes, and measure it


@dataclass(frozen=True)
class FitOutcome:
    """How the fit ended, as it travels between processes (DDP ranks write it to a file)."""

    state: TrialState  # COMPLETE or PRUNED; a fit that fails raises instead
    values: list[float] | None = None  # the objective values of a COMPLETE trial
    pruned_at: int | None = None  # the epoch after which a PRUNED trial stopped
    reason: str | None = None  # why a PRUNED trial stopped, when not by its pruner's rule


@dataclass(frozen=True)
class Fitted:
    """What :func:`fit` left: the outcome, and the objects for logging the model."""

    outcome: FitOutcome
    trainer: pl.Trainer
    module: pl.LightningModule
    datamodule: pl.LightningDataModule
    measured: dict[str, float] = field(default_factory=dict)  # its compressed self's figures
    compressed_with: str | None = None  # the method they are of

    def measured_attrs(self) -> dict[str, Any]:
        """The trial attributes that keep its figures (the report, the leaderboard and
        the champion read them from the study); none for a model not measured."""
        if not self.measured:
            return {}
        return {attrs.MEASURED_ATTR: self.measured,
                attrs.COMPRESSED_WITH_ATTR: self.compressed_with}


def fit(inputs: FitInputs) -> Fitted:
    """Build the trial's objects from its config and train them.

    Raises on anything that makes the trial FAIL (a build error, a shape mismatch, CUDA
    out of memory, a metric never logged, a NaN or infinite objective, loss or weights
    when epochs are not reported); returns PRUNED or COMPLETE with the objective values.
    A NaN metric under epoch reports stops the trial PRUNED (tuner.trial.pruning), and so
    does a NaN training loss or weight (tuner.trial.divergence).
    """
    pl.seed_everything(inputs.seed, workers=True, verbose=False)
    datamodule, module = build_objects(inputs.cfg)
    metrics = inputs.metrics
    pruning = (OptunaPruning(inputs.trial, float_metric(metrics[0]))
               if inputs.reports_epochs else None)
    divergence = DivergenceStop()
    # The config's own callbacks first, tuner's after: tuner's read what the epoch left.
    callbacks = [*build_callbacks(inputs.cfg, str(inputs.root_dir)).values(),
                 *(c for c in (pruning, divergence, inputs.checkpoint) if c is not None),
                 *inputs.callbacks, *_compression_callbacks(inputs)]
    trainer = build_trainer(inputs.cfg.trainer, callbacks=callbacks, logger=inputs.logger,
                            root_dir=str(inputs.root_dir), **inputs.trainer_overrides)
    logger = inputs.logger
    own_calls = (fluent_run(logger.tracking_uri, logger.run_id)
                 if isinstance(logger, BatchLogger) and logger.tracking_uri else nullcontext())
    with own_calls:  # the module's mlflow.log_* calls land on the trial's run
        # weights_only: the checkpoint is read without running pickled code.
        trainer.fit(module, datamodule=datamodule, ckpt_path=inputs.resume_from,
                    weights_only=True if inputs.resume_from is not None else None)
    if divergence.diverged:
        if not inputs.reports_epochs:  # no epochs reported (several objectives, a size or
            # latency one): Optuna cannot prune it
            raise FloatingPointError(divergence.reason)
        outcome = FitOutcome(TrialState.PRUNED, pruned_at=divergence.at_epoch,
                             reason=divergence.reason)
        return Fitted(outcome, trainer, module, datamodule)
    if pruning is not None and pruning.pruned:
        outcome = FitOutcome(TrialState.PRUNED, pruned_at=pruning.pruned_at,
                             reason=pruning.reason)
        return Fitted(outcome, trainer, module, datamodule)
    if inputs.measures and not trainer.is_global_zero:  # rank 0 measures and reports
        return Fitted(FitOutcome(TrialState.COMPLETE), trainer, module, datamodule)
    measured: dict[str, float] = {}
    if inputs.measures:
        from tuner.trial.measure import measure

        measured = measure(inputs.cfg, module, datamodule)
        if isinstance(logger, BatchLogger):  # on the run, at the epochs trained
            logger.log_metrics(measured, step=trainer.current_epoch)
    values = objective_values(metrics, {**trainer.callback_metrics, **measured})
    # Beside each compressed figure, the float model's (the run has it at its last epoch).
    as_trained = {name: as_computed(float(value))
                  for name, value in trainer.callback_metrics.items()
                  if compressed(name) in measured}
    return Fitted(FitOutcome(TrialState.COMPLETE, values), trainer, module, datamodule,
                  {**as_trained, **measured},
                  str(inputs.cfg.compress.method) if measured else None)


def objective_values(metrics: tuple[str, ...], read: Mapping[str, Any]) -> list[float]:
    """The objectives among what the fit left (and what was measured after it).

    Raises when one is missing or not finite: NaN or inf cannot be ranked, so a
    multi-objective trial that diverged (it reports no epoch) fails here (README: "what
    happens when things fail")."""
    values = []
    for metric in metrics:
        value = read.get(metric)
        if value is None:
            raise RuntimeError(f"metric '{metric}' was not logged in validation")
        values.append(as_computed(float(value)))
    bad = [m for m, v in zip(metrics, values, strict=True) if not math.isfinite(v)]
    if bad:
        raise FloatingPointError(f"objective {bad[0]} is {values[metrics.index(bad[0])]}")
    return values


def _compression_callbacks(inputs: FitInputs) -> list[pl.Callback]:
    """Quantization-aware training's, when the trial's compress.method is qat."""
    settings = inputs.cfg.get("compress")
    if not inputs.measures or settings is None or settings.method != "qat":
        return []
    from tuner.trial.compress import QuantizationAwareTraining

    return [QuantizationAwareTraining(int(settings.qat_start_epoch))]

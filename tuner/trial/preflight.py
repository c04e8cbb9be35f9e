"""Train one batch before the study exists, so that bad code fails before any record does.

The preflight builds the DataModule, the LightningModule, the config's callbacks and a
Trainer from the composed config (the search space's values are not applied), fits one
training and one validation batch (Lightning's ``fast_dev_run``) and checks that every
metric the study optimises, and every metric a callback watches, was logged. A
``_target_`` that fails to build, a Trainer setting Lightning refuses, a shape mismatch
or a metric the module never logs is reported as a ConfigError naming the file to fix;
the study, its trials and its MLflow runs are only created after this passes. It costs
about one training step plus Trainer set-up.
"""

from __future__ import annotations

import lightning.pytorch as pl

from tuner.config.checks import IMPORTED_IN_SLOT, check_targets
from tuner.config.plan import SweepPlan
from tuner.core.errors import ConfigError, Problem, describe_error
from tuner.core.measures import logged_metrics
from tuner.core.quiet import quiet_lightning
from tuner.trial.build import BuildError, build_callbacks, build_objects, build_trainer
from tuner.trial.compress_check import check_compression
from tuner.trial.fluent_run import throwaway_run
from tuner.trial.metrics_logger import BatchLogger


def preflight(plan: SweepPlan) -> None:
    quiet_lightning()
    problems: list[Problem] = []
    check_targets(plan.composed, problems, IMPORTED_IN_SLOT)
    if problems:
        raise ConfigError(problems)
    cfg = plan.cfg
    pl.seed_everything(cfg.seed, verbose=False)
    try:
        datamodule, module = build_objects(cfg)
    except BuildError as error:
        raise ConfigError(Problem(plan.locate(error.group), error.group,
                                  f"cannot be built: {describe_error(error.cause)}",
                                  f"fix the {error.group} settings or its class")) from error
    own = _own_callbacks(plan)
    seen = MetricsAtValidationEnd()
    trainer = _one_batch_trainer(plan, [*own.values(), seen, *_quantization_aware(plan)])
    try:
        with throwaway_run():
            trainer.fit(module, datamodule=datamodule)
    except Exception as error:
        raise ConfigError(Problem(f"{plan.locate('model')} with {plan.locate('data')}", "",
                                  f"training one batch failed: {describe_error(error)}",
                                  "check that the model and the data fit together (shapes, "
                                  "dtypes) and that the module's steps run")) from error
    logged = sorted(seen.names)
    _check_monitors(plan, own, seen.names | set(trainer.callback_metrics))
    missing = [m for m in logged_metrics(plan.metrics) if m not in logged]
    if missing:
        raise ConfigError(Problem(
            plan.locate("metric"), "metric",
            f"'{missing[0]}' is not logged by {cfg.model._target_} by the end of validation, "
            f"where trials read it; by then it has logged: {', '.join(logged) or 'nothing'}",
            f"set metric to one of those (e.g. metric={logged[0]})" if logged else
            "log the metric with self.log(...) in validation_step or on_validation_epoch_end"))
    if plan.compression is not None:
        check_compression(plan, module, datamodule)


def _quantization_aware(plan: SweepPlan) -> list[pl.Callback]:
    """QAT from the first batch, when a trial may train with it: its fake quantization
    must run on this model too."""
    if plan.compression is None or "qat" not in plan.compression.methods:
        return []
    from tuner.trial.compress import QuantizationAwareTraining

    return [QuantizationAwareTraining(0)]


def _own_callbacks(plan: SweepPlan) -> dict[str, pl.Callback]:
    try:
        return build_callbacks(plan.cfg, trial_dir=None)
    except BuildError as error:
        raise ConfigError(Problem(plan.locate(error.group), error.group,
                                  f"cannot be built: {describe_error(error.cause)}",
                                  "fix the callback's settings, or set it to null to leave "
                                  "it out")) from error


def _one_batch_trainer(plan: SweepPlan, callbacks: list[pl.Callback]) -> pl.Trainer:
    try:
        # One process even for DDP trials: a launcher here would start ranks that re-enter
        # the sweep. The batch checks the model and data; the ranks share their code.
        # fast_dev_run swaps the logger for Lightning's DummyLogger, which takes every
        # call a module makes of a trial's (self.logger.experiment...) and writes nothing.
        return build_trainer(plan.cfg.trainer, fast_dev_run=1, logger=BatchLogger(_nowhere),
                             callbacks=callbacks, devices=1, num_nodes=1, strategy="auto")
    except Exception as error:
        raise ConfigError(Problem(plan.locate("trainer"), "trainer",
                                  f"Lightning refused the settings: {describe_error(error)}",
                                  "fix the trainer settings (e.g. trainer.accelerator=cpu "
                                  "on a machine without a GPU)")) from error


def _nowhere(rows: object) -> None:
    pass


def _check_monitors(plan: SweepPlan, callbacks: dict[str, pl.Callback], logged: set[str]
                    ) -> None:
    """A callback that watches a metric (early stopping, a checkpoint's best) must watch
    one the module logs: Lightning would only fail at the end of the first epoch."""
    problems = []
    for name, callback in callbacks.items():
        monitor = getattr(callback, "monitor", None)
        if isinstance(monitor, str) and monitor not in logged:
            key = f"callbacks.{name}.monitor"
            problems.append(Problem(
                plan.locate(key), key,
                f"'{monitor}' is not a metric {plan.cfg.model._target_} logs; it logs: "
                f"{', '.join(sorted(logged)) or 'nothing'}",
                "monitor one of those, e.g. the study's metric "
                f"({plan.epoch_metric or plan.metrics[0]})"))
    if problems:
        raise ConfigError(problems)


class MetricsAtValidationEnd(pl.Callback):
    """Records which metrics exist when validation ends: trials read the objective there
    (train metrics logged at the end of the epoch come later, and would be one behind)."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.names |= set(trainer.callback_metrics)

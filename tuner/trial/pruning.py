"""Report a trial's metric to Optuna once per validation epoch; stop it when told to.

Steps are epochs (1 after the first training epoch), not optimizer steps: a trial that
samples a larger batch or more gradient accumulation takes fewer optimizer steps per
epoch, and comparing trials at equal optimizer steps would compare them after unequal
amounts of data. Hyperband and successive halving count their resources in epochs too.

A metric that is NaN or infinite stops the trial at once, whatever the pruner (even
``pruner=none``): a diverged model does not recover, and training it on is waste. The
trial ends PRUNED, which counts toward ``n_trials``, and Optuna's TPE sampler ranks a
pruned trial whose last value is NaN as the worst, so it learns to avoid that region.

The callback does not raise ``TrialPruned`` inside Lightning's loop (that would run
Lightning's exception teardown); it asks the Trainer to stop and records the decision,
and the trial raises once ``fit`` has returned.
"""

from __future__ import annotations

import math

import lightning.pytorch as pl
import optuna

from tuner.core.floats import as_computed


class MetricNotLogged(RuntimeError):
    """The monitored metric is missing after a validation epoch."""


class OptunaPruning(pl.Callback):
    """Reports each validation epoch to ``trial`` and stops training when Optuna says so.

    Under DDP only rank 0 holds the trial (``trial=None`` on the other ranks): it alone
    reports and decides, and the decision is broadcast so that every rank stops after
    the same epoch (a rank that trained on alone would hang in its next all-reduce).
    """

    def __init__(self, trial: optuna.Trial | None, monitor: str):
        self.trial = trial
        self.monitor = monitor
        self.pruned_at: int | None = None  # epoch of the pruning decision, if any
        self.reason: str | None = None  # why, when it was not the pruner's rule

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        epoch = trainer.current_epoch + 1
        prune = False
        if trainer.is_global_zero:
            metric = trainer.callback_metrics.get(self.monitor)
            if metric is None:
                logged = ", ".join(sorted(trainer.callback_metrics)) or "nothing"
                raise MetricNotLogged(f"metric '{self.monitor}' was not logged in validation; "
                                      f"the module logged: {logged}")
            value = as_computed(float(metric))
            if self.trial is not None:
                self.trial.report(value, step=epoch)
            if not math.isfinite(value):
                prune, self.reason = True, f"{self.monitor} was {value} after epoch {epoch}"
            else:
                prune = self.trial is not None and self.trial.should_prune()
        if trainer.world_size > 1:
            prune = trainer.strategy.broadcast(prune, src=0)
        if prune:
            self.pruned_at = epoch
            trainer.should_stop = True

    @property
    def pruned(self) -> bool:
        return self.pruned_at is not None

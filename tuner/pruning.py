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


class MetricNotLogged(RuntimeError):
    """The monitored metric is missing after a validation epoch."""


class OptunaPruning(pl.Callback):
    def __init__(self, trial: optuna.Trial, monitor: str):
        self.trial = trial
        self.monitor = monitor
        self.pruned_at: int | None = None  # epoch of the pruning decision, if any

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metric = trainer.callback_metrics.get(self.monitor)
        if metric is None:
            logged = ", ".join(sorted(trainer.callback_metrics)) or "nothing"
            raise MetricNotLogged(f"metric '{self.monitor}' was not logged in validation; "
                                  f"the module logged: {logged}")
        value = float(metric)
        epoch = trainer.current_epoch + 1
        self.trial.report(value, step=epoch)
        if not math.isfinite(value) or self.trial.should_prune():
            self.pruned_at = epoch
            trainer.should_stop = True

    @property
    def pruned(self) -> bool:
        return self.pruned_at is not None

"""The Lightning logger of a trial: its metrics leave in batches, not one call per value.

It keeps Lightning's MLflow logger contract, so that a module written for
``MLFlowLogger`` runs unchanged: ``self.logger.experiment`` is an ``MlflowClient`` on
the sweep's tracking store and ``self.logger.run_id`` the trial's run (a figure, a table
or an artifact logged through them lands on the trial's run, written by this process);
``log_hyperparams`` records params, which travel with the trial's result and are logged
when its run ends. MLflow is imported only when a module touches ``experiment``.

Lightning's own MLFlowLogger makes one synchronous request per ``log_metrics`` call.
This one buffers rows and hands them to ``write`` (the slot sends them to its driver,
which writes them to the trial's run: tuner.launch.run_writer) at most every
``flush_interval`` seconds and when training ends, so a fast trial costs one batch for
all its metrics and a long one still shows live curves in the MLflow UI.

Per-epoch metrics are stepped by epoch. Lightning logs every row at the optimizer's
global step, so the same epoch is step 229 in a trial of small batches and 59 in one of
large batches, and their curves do not line up in MLflow's charts; it also adds an
``epoch`` metric to every row (twice per epoch: after training and after validation).
Rows logged at an epoch's end (``on_epoch`` metrics: what tuner's modules log, and what
a pruner or a study's objective reads) are logged here at step = the epochs trained (1
after the first, as the trial's reports to Optuna and "pruned at epoch 2" count), without
the ``epoch`` metric, which the step then says; rows logged per batch (``on_step``) keep
Lightning's global step and its ``epoch``. :class:`EpochEnds` tells the logger which is
which, from Lightning's public hooks (build_trainer adds it beside a BatchLogger).

A trial that resumes from a checkpoint (tuner.trial.resume) logs into the run of the
attempt that was cut short, and trains again the epochs that attempt ran after its last
checkpoint. MLflow cannot delete a metric's values, so the logger skips each step a
metric already has in the run (``logged_until``): every step appears once, in order. The
skipped values are the ones the resumed trial computes anyway, since it restores the
random state too (tuner.trial.checkpoints). The other way round, rows the attempt took
before its checkpoint but that never reached the run (still buffered, or on their way to
the driver, when the process was killed) travel in the checkpoint (:meth:`rows`) and are
written when the repeat starts (:meth:`resend`): the run holds every step up to the
checkpoint whatever the kill caught in flight.
"""

from __future__ import annotations

import time
from argparse import Namespace
from collections.abc import Callable, Mapping
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only

from tuner.core.floats import as_computed
from tuner.core.results import MetricRow

FLUSH_AT = 1000  # rows buffered before a flush whatever the interval (MLflow's batch limit)


class BatchLogger(Logger):
    def __init__(self, write: Callable[[list[MetricRow]], None], flush_interval: float = 2.0,
                 logged_until: Mapping[str, int] | None = None, *,
                 run_id: str | None = None, tracking_uri: str | None = None):
        super().__init__()
        self.write = write
        self.flush_interval = flush_interval
        self._buffer: list[MetricRow] = []
        self._taken: list[MetricRow] = []  # every row so far: a checkpoint keeps them
        self._last_flush = time.monotonic()
        self._logged_until = dict(logged_until or {})  # metric -> last step the run holds
        self._run_id, self._tracking_uri = run_id, tracking_uri
        self._client: Any = None
        self.hyperparams: dict[str, str] = {}  # what the module logged as params
        self.at_epoch_end = False  # set by EpochEnds: the rows Lightning logs now are per-epoch
        self.epoch_ends = EpochEnds(self)

    @property
    def run_id(self) -> str | None:
        """The trial's MLflow run."""
        return self._run_id

    @property
    def tracking_uri(self) -> str | None:
        return self._tracking_uri

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """An ``MlflowClient`` on the sweep's tracking store (Lightning's MLFlowLogger
        gives the same). Lightning reads this at every fit's set-up; MLflow is imported
        only when a module calls one of the client's methods."""
        if self._client is None:
            self._client = _LazyClient(self._tracking_uri)
        return self._client

    @property
    def name(self) -> str:
        return "mlflow"

    @property
    def version(self) -> str:
        return "trial"

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        timestamp = int(time.time() * 1000)
        step = step or 0
        if self.at_epoch_end and "epoch" in metrics:
            metrics = dict(metrics)
            step = int(metrics.pop("epoch")) + 1  # epochs trained, as Optuna's reports count
        for key, value in metrics.items():
            if step > self._logged_until.get(key, -1):
                self._take((key, as_computed(float(value)), timestamp, step))
        if (len(self._buffer) >= FLUSH_AT
                or time.monotonic() - self._last_flush >= self.flush_interval):
            self.flush()

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Kept as the run's params, flattened as Lightning's MLFlowLogger does (``a/b``);
        the driver logs them when the trial ends, beside tuner's own (the sampled values,
        the seed), which win where a name is the same."""
        if isinstance(params, Namespace):
            params = vars(params)
        self.hyperparams.update((key, str(value)) for key, value in _flat(params or {}))

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.flush()

    def _take(self, row: MetricRow) -> None:
        self._buffer.append(row)
        self._taken.append(row)

    def rows(self) -> list[MetricRow]:
        """Every row this logger took, written or still buffered (for a checkpoint)."""
        return list(self._taken)

    def resend(self, rows: list[MetricRow]) -> None:
        """The rows an attempt cut short took before its checkpoint: those of a step the
        run does not hold are written now, with their own timestamps."""
        for row in rows:
            key, _, _, step = row
            if step > self._logged_until.get(key, -1):
                self._take(tuple(row))
                self._logged_until[key] = step
        self.flush()

    def flush(self) -> None:
        if self._buffer:
            rows, self._buffer = self._buffer, []
            self.write(rows)
        self._last_flush = time.monotonic()


class EpochEnds(pl.Callback):
    """Marks when Lightning logs an epoch's rows: its epoch-end hooks run just before it
    logs them (after training: ``on_train_epoch_end``, after validation:
    ``on_validation_epoch_end``), and a batch's hooks before it logs per-batch rows."""

    def __init__(self, logger: BatchLogger):
        self.logger = logger

    def _at_end(self, *args: Any) -> None:
        self.logger.at_epoch_end = True

    def _in_batches(self, *args: Any) -> None:
        self.logger.at_epoch_end = False

    on_train_epoch_end = on_validation_epoch_end = on_test_epoch_end = _at_end
    on_train_batch_start = on_validation_batch_start = on_test_batch_start = _in_batches


class _LazyClient:
    """An ``MlflowClient`` made on the first use of one of its attributes."""

    def __init__(self, tracking_uri: str | None):
        self._tracking_uri, self._client = tracking_uri, None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            if self._tracking_uri is None:
                raise RuntimeError("this logger has no MLflow store (a DDP rank other than 0)")
            from mlflow import MlflowClient

            self._client = MlflowClient(self._tracking_uri)
        return getattr(self._client, name)


def _flat(params: Mapping[str, Any], prefix: str = ""):
    for key, value in params.items():
        if isinstance(value, Namespace):
            value = vars(value)
        if isinstance(value, Mapping) and value:
            yield from _flat(value, f"{prefix}{key}/")
        else:
            yield f"{prefix}{key}", value

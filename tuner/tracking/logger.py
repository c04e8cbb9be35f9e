"""A Lightning logger that writes a trial's metrics to its MLflow run in batches.

Lightning's own MLFlowLogger makes one synchronous request per ``log_metrics`` call.
This one buffers and writes with ``log_batch`` at most every ``flush_interval`` seconds
and when training ends, so a fast trial costs one request for all its metrics and a
long one still shows live curves in the MLflow UI.

A trial that resumes from a checkpoint (tuner.trial.resume) logs into the run of the attempt
that was cut short, and trains again the epochs that attempt ran after its last
checkpoint. MLflow cannot delete a metric's values, so the logger skips each step a
metric already has in the run: every step appears once, in order. The skipped values
are the ones the resumed trial computes anyway, since it restores the random state too
(tuner.trial.checkpoints).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only
from mlflow import MlflowClient
from mlflow.entities import Metric

MAX_METRICS_PER_BATCH = 1000  # MLflow's limit for one log_batch request


class MlflowBatchLogger(Logger):
    def __init__(self, client: MlflowClient, run_id: str, flush_interval: float = 2.0):
        super().__init__()
        self.client = client
        self.run_id = run_id
        self.flush_interval = flush_interval
        self._buffer: list[Metric] = []
        self._last_flush = time.monotonic()
        self._logged_until: dict[str, int] = {}  # metric -> last step the run holds

    def skip_logged_steps(self) -> None:
        """From now on, drop values at steps the run already holds for their metric."""
        for key in self.client.get_run(self.run_id).data.metrics:
            history = self.client.get_metric_history(self.run_id, key)
            self._logged_until[key] = max((m.step for m in history), default=-1)

    @property
    def name(self) -> str:
        return "mlflow"

    @property
    def version(self) -> str:
        return self.run_id

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        timestamp = int(time.time() * 1000)
        step = step or 0
        for key, value in metrics.items():
            if step > self._logged_until.get(key, -1):
                self._buffer.append(Metric(key, float(value), timestamp, step))
        if (len(self._buffer) >= MAX_METRICS_PER_BATCH
                or time.monotonic() - self._last_flush >= self.flush_interval):
            self.flush()

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Ignored: tuner logs the trial's sampled params and config itself."""

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.flush()

    def flush(self) -> None:
        while self._buffer:
            chunk = self._buffer[:MAX_METRICS_PER_BATCH]
            self.client.log_batch(self.run_id, metrics=chunk)
            del self._buffer[:len(chunk)]
        self._last_flush = time.monotonic()

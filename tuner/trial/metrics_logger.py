"""The Lightning logger of a trial: its metrics leave in batches, not one call per value.

Lightning's own MLFlowLogger makes one synchronous request per ``log_metrics`` call.
This one buffers rows and hands them to ``write`` (the slot sends them to its driver,
which writes them to the trial's run: tuner.launch.run_writer) at most every
``flush_interval`` seconds and when training ends, so a fast trial costs one batch for
all its metrics and a long one still shows live curves in the MLflow UI.

A trial that resumes from a checkpoint (tuner.trial.resume) logs into the run of the
attempt that was cut short, and trains again the epochs that attempt ran after its last
checkpoint. MLflow cannot delete a metric's values, so the logger skips each step a
metric already has in the run (``logged_until``): every step appears once, in order. The
skipped values are the ones the resumed trial computes anyway, since it restores the
random state too (tuner.trial.checkpoints).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

from tuner.core.results import MetricRow

FLUSH_AT = 1000  # rows buffered before a flush whatever the interval (MLflow's batch limit)


class BatchLogger(Logger):
    def __init__(self, write: Callable[[list[MetricRow]], None], flush_interval: float = 2.0,
                 logged_until: Mapping[str, int] | None = None):
        super().__init__()
        self.write = write
        self.flush_interval = flush_interval
        self._buffer: list[MetricRow] = []
        self._last_flush = time.monotonic()
        self._logged_until = dict(logged_until or {})  # metric -> last step the run holds

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
        for key, value in metrics.items():
            if step > self._logged_until.get(key, -1):
                self._buffer.append((key, float(value), timestamp, step))
        if (len(self._buffer) >= FLUSH_AT
                or time.monotonic() - self._last_flush >= self.flush_interval):
            self.flush()

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Ignored: tuner logs the trial's sampled params and config itself."""

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.flush()

    def flush(self) -> None:
        if self._buffer:
            rows, self._buffer = self._buffer, []
            self.write(rows)
        self._last_flush = time.monotonic()

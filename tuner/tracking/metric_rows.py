"""A trial's metric rows in its MLflow run: written in as few requests as MLflow allows,
and read back (the last step of each metric) for a resumed trial's logger."""

from __future__ import annotations

from collections.abc import Sequence

from mlflow import MlflowClient
from mlflow.entities import Metric

from tuner.core.results import MetricRow

MAX_METRICS_PER_BATCH = 1000  # MLflow's limit for one log_batch request


def log_metric_rows(client: MlflowClient, run_id: str, rows: Sequence[MetricRow]) -> None:
    """Write metric rows in as few requests as MLflow allows (1000 values each)."""
    rows = list(rows)
    for start in range(0, len(rows), MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=[
            Metric(k, v, t, s) for k, v, t, s in rows[start:start + MAX_METRICS_PER_BATCH]])


def logged_steps(client: MlflowClient, run_id: str) -> dict[str, int]:
    """The last step that the run holds of each of its metrics."""
    logged = {}
    for key in client.get_run(run_id).data.metrics:
        history = client.get_metric_history(run_id, key)
        logged[key] = max((m.step for m in history), default=-1)
    return logged

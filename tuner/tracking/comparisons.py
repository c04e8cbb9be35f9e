"""A comparison of studies as an MLflow run, so that the MLflow UI finds it.

The run lives in the first study's experiment (created if the study was never
tracked), tagged with the studies' names, with each study's best values as metrics and
the comparison page and its figures as artifacts.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping, Sequence

from tuner.core.quiet import quiet_mlflow
from tuner.tracking import tags
from tuner.tracking.breaker import bound_http_retries

_METRIC_KEY = re.compile(r"[^\w\-. /]")  # what MLflow refuses in a metric key


def metric_key(name: str, study: str) -> str:
    """``<name>/<study>``, with the characters MLflow refuses in a key made ``_``."""
    return _METRIC_KEY.sub("_", f"{name}/{study}")


def log_comparison(tracking_uri: str, studies: Sequence[str], best: Mapping[str, float],
                   artifacts: Mapping[str, str], first_parent_run: str | None = None) -> str:
    """Log one FINISHED comparison run (FAILED if a write fails after it was created);
    return its id. ``best``: metric key -> value;
    ``artifacts``: file name -> text (the page, the table as JSON). The run goes in the
    first study's experiment: that of its parent run (``first_parent_run``) where it has
    one (studies may share an experiment: a scheduled job's rounds), else the one named
    after it."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, RunTag

    quiet_mlflow()
    bound_http_retries()  # an unreachable server fails in seconds, not minutes
    client = MlflowClient(tracking_uri)
    experiment = _experiment_of_run(client, first_parent_run) \
        or client.get_experiment_by_name(studies[0])
    if experiment is None:
        experiment_id = client.create_experiment(studies[0])
    else:
        experiment_id = experiment.experiment_id
        if experiment.lifecycle_stage == "deleted":  # as a sweep does (tracking.runs)
            client.restore_experiment(experiment_id)
    run = client.create_run(experiment_id, run_name=f"compare {' vs '.join(studies)}", tags={
        tags.ROLE: "comparison", tags.COMPARED_STUDIES: ",".join(studies)})
    run_id = run.info.run_id
    try:
        client.log_batch(run_id, metrics=[Metric(k, v, run.info.start_time, 0)
                                          for k, v in best.items()],
                         tags=[RunTag(f"tuner.compared.{i}", name)
                               for i, name in enumerate(studies)])
        for name, text in artifacts.items():
            client.log_text(run_id, text, name)
    except BaseException:
        # Not left RUNNING forever; best effort, the store may be what failed.
        with contextlib.suppress(Exception):
            client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _experiment_of_run(client, run_id: str | None):
    if run_id is None:
        return None
    from mlflow.exceptions import MlflowException

    try:
        return client.get_experiment(client.get_run(run_id).info.experiment_id)
    except MlflowException:
        return None  # the store was wiped or changed since the study ran

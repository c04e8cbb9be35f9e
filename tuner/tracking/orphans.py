"""Trial runs a crash left RUNNING, found by their tags.

A trial's run is created, then linked to its trial (its ``mlflow_run_id`` attribute)
at once (tuner.launch.driver); a process killed between the two leaves a run that its
trial does not name. And a trial told how it ended whose process died before its run
was ended leaves that run RUNNING too. Neither is found through the trial's attributes,
so they are looked for by what every trial run carries: its role and trial number tags
(tuner.launch.conclude ends them when a driver starts; a reaper ends its trial's).
"""

from __future__ import annotations

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tuner.tracking import tags


def running_trial_runs(client: MlflowClient, experiment_id: str | None, study: str
                       ) -> dict[int, list[str]]:
    """The study's trial runs still RUNNING in its experiment, by trial number (other
    studies may share the experiment: a scheduled job's rounds); empty while the store
    does not answer (a tracking server that is down)."""
    breaker = getattr(client, "breaker", None)
    if experiment_id is None or (breaker is not None and not breaker.allows_try()):
        return {}
    try:
        runs = client.search_runs(
            [experiment_id], max_results=5000,
            filter_string=f"attributes.status = 'RUNNING' and tags.`{tags.ROLE}` = 'trial'")
    except MlflowException:
        return {}
    found: dict[int, list[str]] = {}
    for run in runs:
        if run.data.tags.get(tags.STUDY) != study:  # (MLflow's filter has no quote escape)
            continue
        number = run.data.tags.get(tags.TRIAL_NUMBER)
        if number is not None and number.isdigit():
            found.setdefault(int(number), []).append(run.info.run_id)
    return found


"""Soak: 8 processes share one study of 200 fast trials, on each kind of storage.

One `tuner sweep` creates the study and the MLflow parent run, and 7 `tuner worker`
processes with the same arguments join it, as on a cluster. The trials are as cheap as a
real training gets (one batch of linear regression), so the stores, the budget lock and
MLflow take the strain: no trial may be lost or counted twice, no process may see a lock
error, and every trial has exactly one MLflow run.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from tests.conftest import client_for, load_study, tuner_command
from tuner.core import attrs
from tuner.study.trial_attrs import trial_attr
from tuner.tracking import tags

N_PROCESSES = 8  # one sweep, then workers
N_TRIALS = 200
FASTEST = ("experiment=diabetes", "trainer.max_epochs=1", "trainer.limit_train_batches=1",
           "trainer.limit_val_batches=1", "tracking.report=false", "slots=1",
           f"n_trials={N_TRIALS}")
# Models stay on: each new best keeps its weights in the shared run_dir, and every
# process's end tries to export the best (one claims it); those writes are among the ones
# that could collide.
LOCK_ERRORS = re.compile(r"database is locked|OperationalError|deadlock|Traceback",
                         re.IGNORECASE)


def run_processes(args: tuple[str, ...], cwd: Path, env: dict[str, str]) -> list[str]:
    """The sweep first, then the workers; each process's output once all have exited."""
    logs = [cwd / f"process-{i}.log" for i in range(N_PROCESSES)]
    commands = ["sweep"] + ["worker"] * (N_PROCESSES - 1)
    processes = []
    for command, log in zip(commands, logs, strict=True):
        with log.open("w") as out:
            processes.append(subprocess.Popen(
                [*tuner_command(), command, *args], cwd=cwd, stdout=out,
                stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1", **env}))
    try:
        for process in processes:
            process.wait(timeout=900)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    outputs = [log.read_text(errors="replace") for log in logs]
    assert [p.returncode for p in processes] == [0] * N_PROCESSES, "\n---\n".join(outputs)
    return outputs


def assert_nothing_lost_or_doubled(study: optuna.Study, client: MlflowClient,
                                   outputs: list[str]) -> None:
    for output in outputs:
        assert not LOCK_ERRORS.search(output), output
    trials = study.get_trials(deepcopy=False)
    states = Counter(t.state for t in trials)
    assert states[TrialState.COMPLETE] + states[TrialState.PRUNED] == N_TRIALS, states
    assert states[TrialState.RUNNING] == 0 and states[TrialState.FAIL] == 0, {
        t.number: t.user_attrs.get(attrs.FAIL_REASON_ATTR) for t in trials
        if t.state == TrialState.FAIL}
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    owners = Counter(trial_attr(t, attrs.OWNER_ATTR) for t in trials)
    assert len(owners) >= 2, f"the processes did not share the study: {owners}"
    print(f"trials per slot process: {sorted(owners.values(), reverse=True)}")

    experiment = client.get_experiment_by_name(study.study_name)
    runs = client.search_runs([experiment.experiment_id], max_results=5000)
    trial_runs = [r for r in runs if r.data.tags.get(tags.ROLE) == "trial"]
    numbers = Counter(int(r.data.tags[tags.TRIAL_NUMBER]) for r in trial_runs)
    assert [n for n, count in numbers.items() if count > 1] == []  # one run per trial
    assert sorted(numbers) == [t.number for t in trials]
    assert {r.info.status for r in trial_runs} == {"FINISHED"}
    run_of = {int(r.data.tags[tags.TRIAL_NUMBER]): r.info.run_id for r in trial_runs}
    assert {t.number: t.user_attrs[attrs.RUN_ID_ATTR] for t in trials} == run_of


def report_rate(storage: str, seconds: float) -> None:
    print(f"soak on {storage}: {N_PROCESSES} processes, {N_TRIALS} trials in {seconds:.1f} s "
          f"({N_TRIALS / seconds * 60:.0f} trials/min)")


@pytest.mark.slow
def test_soak_on_the_embedded_stores(tmp_path):
    """Journal file and SQLite MLflow store under one run dir, shared by all 8 processes."""
    start = time.monotonic()
    outputs = run_processes((*FASTEST, "study_name=soak-embedded"), tmp_path, {})
    report_rate("journal + SQLite MLflow", time.monotonic() - start)
    run_dir = tmp_path / "runs"
    assert_nothing_lost_or_doubled(load_study(run_dir, "soak-embedded"), client_for(run_dir),
                                   outputs)


@pytest.mark.slow
def test_soak_on_postgres_and_an_mlflow_server(postgres, mlflow_server, tmp_path):
    database = postgres.create_database("soak")
    env = {**postgres.env(database), "MLFLOW_TRACKING_URI": mlflow_server.url}
    start = time.monotonic()
    outputs = run_processes((*FASTEST, "study_name=soak-postgres", "storage=postgres",
                             "tracking=server"), tmp_path, env)
    report_rate("PostgreSQL + MLflow server", time.monotonic() - start)
    storage = optuna.storages.RDBStorage(postgres.url(database, with_password=True))
    study = optuna.load_study(study_name="soak-postgres", storage=storage)
    client = MlflowClient(mlflow_server.url, registry_uri=mlflow_server.url)
    assert_nothing_lost_or_doubled(study, client, outputs)

"""Many workers on one study: PostgreSQL storage and an MLflow tracking server, for real.

Both servers run on 127.0.0.1 (tests/servers.py); the CLI runs in subprocesses with the
password only in the environment, as on a cluster.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from tests.conftest import FAST, MODELS, run_tuner, tuner_command
from tuner.core import attrs
from tuner.study.trial_attrs import trial_attr
from tuner.tracking import tags

SHARED = ("storage=postgres", "tracking=server", *FAST, MODELS, "trainer.max_epochs=1")


def server_env(postgres, mlflow_server, database: str) -> dict[str, str]:
    return {**postgres.env(database), "MLFLOW_TRACKING_URI": mlflow_server.url}


def load(postgres, database: str, name: str) -> optuna.Study:
    storage = optuna.storages.RDBStorage(postgres.url(database, with_password=True))
    return optuna.load_study(study_name=name, storage=storage)


def test_four_workers_on_one_postgres_study_finish_exactly_n_trials(
        postgres, mlflow_server, tmp_path):
    """One sweep and three workers, started together as a cluster job would start them
    (the workers wait for the sweep to create the study)."""
    database = postgres.create_database("four_workers")
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           **server_env(postgres, mlflow_server, database)}
    args = ("n_trials=20", "study_name=four", *SHARED, "trainer.max_epochs=3", "pruner=none")
    processes = [subprocess.Popen([*tuner_command(), command, *args], cwd=tmp_path, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for command in ("sweep", "worker", "worker", "worker")]
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    assert [p.returncode for p in processes] == [0] * 4, "\n---\n".join(outputs)

    study = load(postgres, database, "four")
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 20
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    owners = {trial_attr(t, attrs.OWNER_ATTR) for t in trials}
    assert len(owners) >= 2, "the workers did not share the study"

    client = MlflowClient(mlflow_server.url, registry_uri=mlflow_server.url)
    experiment = client.get_experiment_by_name("four")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    [parent] = [r for r in runs if r.data.tags.get(tags.ROLE) == "study"]
    assert parent.info.run_id == study.user_attrs[attrs.PARENT_RUN_ATTR]
    assert parent.info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get(tags.ROLE) == "trial"]
    numbers = sorted(int(r.data.tags[tags.TRIAL_NUMBER]) for r in children)
    assert numbers == sorted(t.number for t in trials)  # exactly one run per trial
    assert {r.data.tags[tags.PARENT_RUN] for r in children} == {parent.info.run_id}
    assert {r.info.status for r in children} <= {"FINISHED", "FAILED"}
    # Each trial's composed config reached its run through the server's artifact proxy.
    by_number = {t.number: t for t in trials}
    for run in children[:3]:
        path = client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path))
        trial = by_number[int(run.data.tags[tags.TRIAL_NUMBER])]
        assert Path(path).read_text() == trial_attr(trial, attrs.CONFIG_ATTR)
    # The champion went through the server's registry and artifact proxy.
    server_log = mlflow_server.log_path.read_text(errors="replace")[-4000:]
    # Whichever command ended first exported the best model and promoted it (a worker,
    # if its slot trained the best); the sweep waited for that export and reports it.
    assert any("champion: promoted to models:/four@champion" in o for o in outputs), (
        "\n---\n".join(outputs) + f"\n--- mlflow server log (tail) ---\n{server_log}")
    assert "models:/four@champion" in outputs[0], outputs[0]
    version = client.get_model_version_by_alias("four", tags.CHAMPION_ALIAS)
    assert version.run_id in {r.info.run_id for r in children}


def test_a_password_in_the_storage_url_appears_in_no_record(postgres, mlflow_server, tmp_path,
                                                           monkeypatch):
    database = postgres.create_database("masked")
    env = server_env(postgres, mlflow_server, database)
    env.pop("PGPASSWORD")
    monkeypatch.delenv("PGPASSWORD", raising=False)
    secret = postgres.password
    url = postgres.url(database, with_password=True)
    result = run_tuner("sweep", "n_trials=2", "study_name=masked", *SHARED,
                       f"storage.url={url}", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert secret not in result.stdout + result.stderr

    study = load(postgres, database, "masked")
    for trial in study.trials:
        assert secret not in str(trial.user_attrs) + str(trial.params)
        assert "tuner:***@" in trial_attr(trial, attrs.CONFIG_ATTR)
    assert secret not in str(study.user_attrs)
    client = MlflowClient(mlflow_server.url, registry_uri=mlflow_server.url)
    experiment = client.get_experiment_by_name("masked")
    for run in client.search_runs([experiment.experiment_id]):
        assert secret not in str(run.data.params) + str(run.data.tags)
        for artifact in ("config.yaml", "best_config.yaml"):
            try:
                path = client.download_artifacts(run.info.run_id, artifact, str(tmp_path))
            except Exception:
                continue
            assert secret not in Path(path).read_text()
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix in
                (".yaml", ".json", ".log", ".txt") and secret in p.read_text(errors="ignore")]


def test_unknown_study_is_refused_by_a_worker(postgres, mlflow_server, tmp_path):
    database = postgres.create_database("nothing_here")
    result = run_tuner("worker", "--wait", "2", "study_name=absent", *SHARED, cwd=tmp_path,
                       env=server_env(postgres, mlflow_server, database))
    assert result.returncode == 2
    assert "there is no study 'absent' in the storage to join" in result.stderr
    assert "start it with `tuner sweep`" in result.stderr


@pytest.mark.parametrize("storage", ["journal", "sqlite"])
def test_embedded_storages_hold_four_local_slots(storage, tmp_path):
    # After FAST, which asks for one slot: the last value of a key wins.
    result = run_tuner("sweep", f"storage={storage}", "n_trials=12", *FAST, "slots=4",
                       "trainer.max_epochs=1", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "database is locked" not in result.stdout + result.stderr
    path = tmp_path / "runs" / ("optuna.journal" if storage == "journal" else "optuna.db")
    backend = (optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(path))) if storage == "journal"
        else optuna.storages.RDBStorage(f"sqlite:///{path}"))
    trials = optuna.load_study(study_name="digits-mlp", storage=backend).trials
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 12
    assert len({t.number for t in trials}) == len(trials)
    assert len({trial_attr(t, attrs.OWNER_ATTR) for t in trials}) >= 2


def test_two_drivers_never_claim_at_once_on_postgres(postgres, pg_env, tmp_path, monkeypatch):
    """Optuna hands a study an RDB storage wrapped in its cache; the claim lock must be
    the database's advisory lock all the same (a soak of 8 processes once overshot
    n_trials by two when it was not)."""
    from tests.conftest import plan
    from tests.test_driver import _two_drivers_claim_one_at_a_time

    monkeypatch.setenv("PGDATABASE", postgres.create_database("claim_lock"))
    _two_drivers_claim_one_at_a_time(plan(*FAST, "storage=postgres", run_dir=tmp_path / "r"))

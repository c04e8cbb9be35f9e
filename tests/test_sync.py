"""The MLflow tracking server goes away mid-sweep, comes back, and `tuner sync` catches up.

A real `mlflow server` (SQLite backend) on 127.0.0.1 is stopped once a couple of trials
have finished and started again, same port and store, after the sweep; the real `tuner`
command runs in subprocesses.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from optuna.trial import TrialState

from tests.conftest import (
    FAST,
    MODELS,
    client_for,
    load_study,
    trial_runs,
    tuner_command,
    tuner_here,
)
from tests.servers import MlflowServer
from tuner.core import attrs
from tuner.study.trials import best_trial
from tuner.tracking import tags
from tuner.tracking.links import late_attr, model_error_of, model_uri_of, run_id_of

N_TRIALS = 10
EPOCHS = 4
ARGS = ("tracking=server", f"n_trials={N_TRIALS}", *FAST, MODELS, f"trainer.max_epochs={EPOCHS}",
        "pruner=none", "slots=2")
STATUS = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "FINISHED",
          TrialState.FAIL: "FAILED"}
TRIAL_WAIT_BOUND_S = 20.0  # far above a trial's own time here; MLflow's default retries: minutes


@pytest.fixture
def server(tmp_path):
    with MlflowServer(None, tmp_path / "mlflow-server") as running:
        yield running


def _outbox_files(run_dir):
    folder = run_dir / "mlflow-outbox" / "digits-mlp"
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()} if folder.exists() else {}


def _wait_for_finished_trials(run_dir, n, process, timeout=300.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        if (run_dir / "optuna.journal").exists():
            try:
                trials = load_study(run_dir).trials
            except KeyError:  # the study is being created
                trials = []
            if sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) >= n:
                return
        time.sleep(0.2)
    raise AssertionError(f"fewer than {n} trials finished in {timeout:.0f} s")


def test_sweep_outlives_its_tracking_server_and_sync_writes_what_it_missed(server, tmp_path):
    env = {"MLFLOW_TRACKING_URI": server.url}
    run_dir = tmp_path / "runs"
    sweep = subprocess.Popen([*tuner_command(), "sweep", *ARGS], cwd=tmp_path,
                             env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for_finished_trials(run_dir, 2, sweep)
        server.stop()
        output = sweep.communicate(timeout=600)[0]
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode == 0, output
    assert "MLflow records pending; run `tuner sync tracking=server" in output, output

    # Optuna has every trial, told in time: no trial waited long on the dead server.
    study = load_study(run_dir)
    trials = study.trials
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == N_TRIALS
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    seconds = [t.duration.total_seconds() for t in trials]
    assert max(seconds) < TRIAL_WAIT_BOUND_S, seconds
    waiting = _outbox_files(run_dir)
    assert waiting, "nothing went to the outbox: the server was stopped too late"
    # The best as tuner picks it (a tie goes to the trial that kept its weights).
    waits = late_attr(attrs.MODEL_ERROR_ATTR, best_trial(study).number)
    assert "not logged yet" in study.user_attrs.get(waits, ""), output  # the best waits too

    # While the server is still down, sync says so and touches nothing.
    down = tuner_here("sync", *ARGS, cwd=tmp_path, env=env)
    assert down.returncode == 1, down.stdout + down.stderr
    assert "tracking.tracking_uri" in down.stderr and "tuner sync" in down.stderr
    assert _outbox_files(run_dir) == waiting

    server.start()  # same port, same store
    synced = tuner_here("sync", *ARGS, cwd=tmp_path, env=env)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert "run created, params, config.yaml, metrics, ended FINISHED" in synced.stdout
    assert "parent run: champion, leaderboard and report; parent run ended FINISHED" in (
        synced.stdout)
    assert not [p for p in _outbox_files(run_dir) if p.suffix == ".jsonl"]

    study = load_study(run_dir)  # sync added the late run ids to the study
    study_attrs = study.user_attrs
    runs = trial_runs(run_dir, "digits-mlp", server.url)
    by_number = {int(r.data.tags[tags.TRIAL_NUMBER]): r for r in runs}
    assert len(runs) == len(by_number) == len(study.trials)  # exactly one run per trial
    client = client_for(run_dir, server.url)
    for trial in study.trials:
        run = by_number[trial.number]
        assert run_id_of(trial, study_attrs) == run.info.run_id
        assert run.info.status == STATUS[trial.state], trial.number
        assert run.data.tags[tags.STATE] == trial.state.name
        for name, value in trial.params.items():
            assert run.data.params[name] == str(value)
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
        assert steps == sorted(set(steps)) and len(steps) == EPOCHS, (trial.number, steps)
    parent = client.get_run(study.user_attrs[attrs.PARENT_RUN_ATTR])
    assert parent.info.status == "FINISHED"  # sync ended it as the sweep would have
    best = best_trial(study)
    assert model_uri_of(best, study_attrs) is not None
    assert model_error_of(best, study_attrs) is None and not study_attrs[waits]  # no longer true
    champion = client.get_model_version_by_alias("digits-mlp", tags.CHAMPION_ALIAS)
    assert champion.run_id == run_id_of(best, study_attrs)

    again = tuner_here("sync", *ARGS, cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing to sync" in again.stdout
    assert len(trial_runs(run_dir, "digits-mlp", server.url)) == len(study.trials)

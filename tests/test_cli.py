"""End to end through the real `tuner` command, its stores, and real servers on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import optuna
import pytest

from tests.conftest import (
    client_for,
    files_under,
    load_study,
    run_tuner,
    start,
    stop,
    tuner_here,
)
from tests.servers import free_port
from tuner.core import attrs
from tuner.tracking import tags

N_TRIALS = 4


@pytest.fixture(scope="module")
def default_sweep(tmp_path_factory):
    """`tuner sweep` on the built-in defaults, shrunk: the records every test below reads.
    Run as on an HPC login node, with SLURM's `srun` on the PATH (Lightning warns about
    it once per Trainer, in the middle of the progress line)."""
    cwd = tmp_path_factory.mktemp("e2e")
    bin_dir = tmp_path_factory.mktemp("slurm-bin")
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "srun").chmod(0o755)
    result = run_tuner("sweep", f"n_trials={N_TRIALS}", "trainer.max_epochs=3", cwd=cwd,
                       env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    assert result.returncode == 0, result.stdout + result.stderr
    return cwd, cwd / "runs", result


def test_sweep_finishes_and_reports(default_sweep):
    _, run_dir, result = default_sweep
    out = result.stdout
    assert f"study digits-mlp: {N_TRIALS} trials of mlp on digits" in out
    assert "done (budget)" in out
    assert "champion: promoted to models:/digits-mlp@champion (version 1" in out
    assert out.count("\ntrial ") + out.startswith("trial ") == N_TRIALS  # a line per trial
    assert {p.name for p in run_dir.iterdir()} >= {"optuna.journal", "mlflow.db", "mlartifacts"}
    assert sorted(p.name for p in run_dir.parent.iterdir()) == ["runs"]  # nothing else in cwd
    # Nothing but our lines: no library logging (e.g. the store's migrations or Optuna's
    # study creation, which the start-up warm-up runs) reaches the console.
    assert result.stderr == ""
    assert "srun" not in out


def test_mlflow_hierarchy_and_links_both_ways(default_sweep):
    _, run_dir, _ = default_sweep
    client = client_for(run_dir)
    study = load_study(run_dir, "digits-mlp")
    experiment = client.get_experiment_by_name("digits-mlp")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get(tags.ROLE) == "study"]
    children = [r for r in runs if r.data.tags.get(tags.ROLE) == "trial"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert study.user_attrs[attrs.PARENT_RUN_ATTR] == parent.info.run_id
    assert len(children) == N_TRIALS == len(study.trials)
    by_number = {t.number: t for t in study.trials}
    for run in children:
        assert run.data.tags[tags.PARENT_RUN] == parent.info.run_id
        assert run.data.tags[tags.STUDY] == "digits-mlp"
        trial = by_number[int(run.data.tags[tags.TRIAL_NUMBER])]
        assert trial.user_attrs[attrs.RUN_ID_ATTR] == run.info.run_id
        expected = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}
        assert run.info.status == expected[trial.state.name]
        assert run.data.tags[tags.STATE] == trial.state.name
        for name, value in trial.params.items():  # the sampled params, as MLflow params
            assert run.data.params[name] == str(value)
        history = client.get_metric_history(run.info.run_id, "val_acc")
        epochs = max(trial.intermediate_values) if trial.intermediate_values else 3
        # One point per validation epoch, stepped by epochs trained whatever the batch
        # size (Lightning's global step would put epoch 1 at step 22 or 44)...
        assert [m.step for m in history] == list(range(1, epochs + 1))
        assert [m.value for m in history] == [trial.intermediate_values[e]
                                              for e in range(1, epochs + 1)]
        # ... no `epoch` chart (the step says it) and the unchanging size logged once.
        assert "epoch" not in run.data.metrics
        assert len(client.get_metric_history(run.info.run_id, "param_count")) == 1
        config = Path(client.download_artifacts(run.info.run_id, "config.yaml")).read_text()
        assert f"lr: {trial.params['model.lr']}" in config


def test_parent_run_has_best_leaderboard_and_report(default_sweep):
    _, run_dir, _ = default_sweep
    client = client_for(run_dir)
    study = load_study(run_dir, "digits-mlp")
    parent_id = study.user_attrs[attrs.PARENT_RUN_ATTR]
    parent = client.get_run(parent_id)
    assert parent.data.metrics["best_val_acc"] == pytest.approx(study.best_value)
    # The accuracy as computed, in float32: 0.98333335, not 0.9833333492279053.
    assert repr(study.best_value) == str(np.float32(study.best_value))
    assert parent.data.tags[tags.BEST_TRIAL] == str(study.best_trial.number)
    assert parent.data.tags[f"{tags.BEST_PARAM_PREFIX}model.lr"] == str(
        study.best_params["model.lr"])
    rows = json.loads(Path(client.download_artifacts(parent_id, "leaderboard.json")).read_text())
    assert len(rows) == N_TRIALS and rows[0]["trial"] == study.best_trial.number
    report = Path(client.download_artifacts(parent_id, "report.html")).read_text()
    assert "Leaderboard" in report and 'id="plotly-gz"' in report
    assert f"trial {study.best_trial.number}" in report


def test_champion_is_registered_and_loads_without_pickle(default_sweep):
    _, run_dir, _ = default_sweep
    study = load_study(run_dir, "digits-mlp")
    client = client_for(run_dir)
    version = client.get_model_version_by_alias("digits-mlp", "champion")
    assert version.run_id == study.best_trial.user_attrs[attrs.RUN_ID_ATTR]
    assert version.tags[tags.VERSION_METRIC] == "val_acc"
    assert version.tags[tags.VERSION_VALUE] == repr(study.best_value)
    # A fresh process with MLflow's pickle deserialisation switched off loads the
    # champion and reproduces the best trial's validation accuracy exactly.
    script = f"""
import mlflow, numpy as np, torch
from tuner.data.digits import DigitsDataModule
mlflow.set_tracking_uri("sqlite:///{run_dir}/mlflow.db")
model = mlflow.pyfunc.load_model("models:/digits-mlp@champion")
dm = DigitsDataModule(); dm.setup("fit")
x, y = dm.val_tensors
logits = model.predict(x.numpy() * 16)  # raw pixels: the exported model scales them
print("ACC", float((np.asarray(logits).argmax(1) == y.numpy()).mean()))
"""
    env = {**os.environ, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false"}
    result = subprocess.run([_python(), "-c", script], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    accuracy = float(result.stdout.split("ACC")[1])
    assert accuracy == pytest.approx(study.best_value, abs=1e-6)
    model_dir = run_dir / "mlartifacts" / "digits-mlp" / "models"
    saved = [p.name for p in files_under(model_dir)]
    assert "model.pt2" in saved and not [n for n in saved if n.endswith((".pkl", ".pth"))]


def _python() -> str:
    import sys

    return sys.executable


def test_best_prints_value_params_and_config(default_sweep):
    cwd, _, _ = default_sweep
    study = load_study(cwd / "runs", "digits-mlp")
    result = run_tuner("best", "digits-mlp", cwd=cwd)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"best trial {study.best_trial.number}: val_acc={study.best_value:.6g}" in out
    assert f"model.lr = {study.best_params['model.lr']}" in out
    assert "config:" in out and "_target_: tuner.models.mlp.MLPClassifier" in out
    as_json = json.loads(run_tuner("best", "--json", cwd=cwd).stdout)
    assert as_json["best"]["number"] == study.best_trial.number
    assert as_json["n_trials"] == N_TRIALS and as_json["study"] == "digits-mlp"
    config = as_json["best"]["config"]  # an object, not a YAML string inside the JSON
    assert config["model"]["lr"] == study.best_params["model.lr"]
    assert config["model"]["_target_"] == "tuner.models.mlp.MLPClassifier"


def test_a_rerun_of_a_finished_sweep_says_there_was_nothing_to_run(default_sweep):
    cwd, run_dir, _ = default_sweep
    before = len(load_study(run_dir, "digits-mlp").trials)
    result = tuner_here("sweep", f"n_trials={N_TRIALS}", "trainer.max_epochs=3", cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (f"nothing to run: the study has its {N_TRIALS} trials already "
            f"({N_TRIALS} complete, 0 pruned, 0 failed); raise n_trials to run more"
            ) in result.stdout
    assert "done (" not in result.stdout and "\ntrial " not in result.stdout
    assert "champion: still models:/digits-mlp@champion" in result.stdout
    assert len(load_study(run_dir, "digits-mlp").trials) == before


def test_best_for_unknown_study_lists_the_real_ones(default_sweep):
    cwd, _, _ = default_sweep
    result = run_tuner("best", "digits-resnet", cwd=cwd)
    assert result.returncode == 2
    assert "no study named 'digits-resnet'" in result.stderr
    assert "digits-mlp" in result.stderr


def test_best_without_records_writes_nothing(tmp_path):
    result = run_tuner("best", cwd=tmp_path)
    assert result.returncode == 2 and "run `tuner sweep` first" in result.stderr
    assert files_under(tmp_path) == []


def test_cfg_prints_config_and_writes_nothing(tmp_path):
    result = run_tuner("sweep", "--cfg", "model=cnn", "n_trials=7", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "_target_: tuner.models.cnn.CNNClassifier" in result.stdout
    assert "n_trials: 7" in result.stdout
    assert files_under(tmp_path) == []


def test_help_lists_commands_and_groups(tmp_path):
    result = run_tuner("--help", cwd=tmp_path)
    for command in ("sweep", "best", "sync", "ui", "serve"):
        assert command in result.stdout
    result = run_tuner("sweep", "--help", cwd=tmp_path)
    for word in ("hyperband", "tpe", "--config-dir"):
        assert word in result.stdout
    result = run_tuner("sync", "--help", cwd=tmp_path)
    for words in ("tracking server was down", "mlflow-outbox", "the sweep's own overrides",
                  "Exit code 0 when"):
        assert words in result.stdout


def said_ready(process, words: str, timeout: float = 180) -> list[str]:
    """The command's lines up to the one that says it is ready (``words``)."""
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        assert line or process.poll() is None, "".join(lines)
        lines.append(line)
        if words in line:
            return lines
    raise AssertionError("never said it was ready:\n" + "".join(lines))


def test_ui_serves_the_study_on_loopback(default_sweep):
    """It says where the UI is only once the UI answers there."""
    cwd, _, _ = default_sweep
    port = free_port()
    process = start(["ui", "--port", str(port)], cwd)
    try:
        lines = said_ready(process, f"ready at http://127.0.0.1:{port}")
        # The command's own lines, none of MLflow's or uvicorn's chatter (INFO lines,
        # its middleware note, a library's deprecation warning).
        assert lines == [lines[0], lines[-1]], lines
        assert lines[0].startswith("starting the MLflow UI")
        assert "'Model training'" in process.stdout.readline()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
            assert answer.status == 200  # at once: no waiting after the line
        url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=50"
        with urllib.request.urlopen(url, timeout=10) as response:
            names = [e["name"] for e in json.load(response)["experiments"]]
        assert "digits-mlp" in names
    finally:
        stop(process)


def test_ui_serve_and_dashboard_refuse_a_busy_port_before_saying_anything(default_sweep):
    """MLflow's servers report a taken port only in their log (the UI then exits 0, the
    model server 35 s later); tuner refuses it first, as the dashboard always did."""
    import socket

    cwd, _, _ = default_sweep
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = str(holder.getsockname()[1])
        for command in (["ui"], ["serve", "digits-mlp"], ["dashboard", "digits-mlp"]):
            started = time.monotonic()
            result = run_tuner(*command, "--port", port, cwd=cwd, timeout=60)
            assert result.returncode == 2, (command, result.stdout, result.stderr)
            assert f"cannot listen on 127.0.0.1 port {port}" in result.stderr
            assert "choose another --port" in result.stderr
            assert "at http://" not in result.stdout  # no address promised
            assert time.monotonic() - started < 30
    tunnel = run_tuner("serve", "--host", "0.0.0.0", "--port", "5002", cwd=cwd)
    assert tunnel.returncode == 2 and "ssh -L 5002:127.0.0.1:5002 host" in tunnel.stderr
    typo = run_tuner("serve", "digits-mpl", "--port", str(free_port()), cwd=cwd)
    assert typo.returncode == 2
    assert "study 'digits-mpl' has no champion model; these have one: digits-mlp" in typo.stderr
    assert "e.g. tuner serve digits-mlp" in typo.stderr


def test_ui_refuses_a_public_host_without_a_password(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    result = run_tuner("ui", "--host", "0.0.0.0", cwd=tmp_path)
    assert result.returncode == 2
    assert "refusing to bind 0.0.0.0 without authentication" in result.stderr
    assert "set MLFLOW_AUTH_ADMIN_PASSWORD" in result.stderr
    short = run_tuner("ui", "--host", "0.0.0.0", cwd=tmp_path,
                      env={"MLFLOW_AUTH_ADMIN_PASSWORD": "hunter2"})
    assert short.returncode == 2 and "shorter than 12 characters" in short.stderr
    assert files_under(tmp_path) == []


def test_ui_on_a_public_host_asks_for_the_admin_password(default_sweep):
    cwd, _, _ = default_sweep
    port = free_port()
    password = "correct horse battery"
    process = start(["ui", "--host", "0.0.0.0", "--port", str(port)], cwd,
                    env={"MLFLOW_AUTH_ADMIN_PASSWORD": password})
    url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=50"

    def get(user: str | None, secret: str | None) -> tuple[int, bytes]:
        request = urllib.request.Request(url)
        if user is not None:
            token = base64.b64encode(f"{user}:{secret}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, b""

    try:
        deadline = time.monotonic() + 120
        while True:  # up once it answers at all (401 included)
            assert process.poll() is None, process.stdout.read()
            try:
                status, _ = get(None, None)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                assert time.monotonic() < deadline, "the UI did not start"
                time.sleep(0.5)
        assert status == 401
        assert get("admin", "wrong")[0] == 401
        status, body = get("admin", password)
        assert status == 200
        assert "digits-mlp" in [e["name"] for e in json.loads(body)["experiments"]]
    finally:
        stop(process)
    assert password not in (cwd / "runs" / "basic_auth.ini").read_text()


def test_serve_answers_predictions_for_the_champion(default_sweep):
    cwd, _, _ = default_sweep
    port = free_port()
    process = start(["serve", "digits-mlp", "--port", str(port)], cwd)
    try:
        lines = said_ready(process, f"at http://127.0.0.1:{port}/invocations")
        assert lines[0].startswith("starting MLflow's model server")
        assert not [line for line in lines if "Downloading artifacts" in line]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5) as answer:
            assert answer.status == 200  # it says it serves once it does
        # It says what the model takes (its signature) and gives a request that works.
        said = process.stdout.readline()
        assert said.startswith('input: {"inputs": [...]}, rows of 64 float32 values'), said
        example = process.stdout.readline()
        assert example.startswith("try: curl -X POST"), example
        body_file = Path(shlex.split(example)[-2].removeprefix("@"))
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations",
                                         data=body_file.read_bytes(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert np.asarray(json.load(response)["predictions"]).shape == (2, 10)
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        # Raw pixels (0..16), as scikit-learn gives them: the model scales them itself.
        body = json.dumps({"inputs": x[:64].astype("float32").tolist()}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            predictions = np.asarray(json.load(response)["predictions"])
        assert predictions.shape == (64, 10)
        assert (predictions.argmax(1) == y[:64]).mean() > 0.5
    finally:
        stop(process)


def test_ctrl_c_marks_the_running_trial_and_a_rerun_resumes(tmp_path):
    process = start(["sweep", "n_trials=40", "trainer.max_epochs=30", "tracking.report=false"],
                    tmp_path, env={"PYTHONUNBUFFERED": "1"})
    lines = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # wait until a trial has finished
            line = process.stdout.readline()
            lines.append(line)
            if line.startswith("trial "):
                break
        assert any(line.startswith("trial ") for line in lines), "".join(lines)
        time.sleep(0.5)  # well inside the next trial's 30 epochs
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            stop(process)
    assert process.returncode == 130, "".join(lines) + output
    assert "run the same command again to resume" in output
    run_dir = tmp_path / "runs"
    study = load_study(run_dir, "digits-mlp")
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING], output
    # Every slot's running trial (slots=auto: one slot per core) is cut short.
    interrupted = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert interrupted
    assert all(t.user_attrs[attrs.FAIL_REASON_ATTR].startswith("interrupted")
               for t in interrupted), [t.user_attrs for t in interrupted]
    # The message names the trials that were training (a claimed-ahead one is FAIL too).
    said = re.search(r"trials? ([\d, ]+) (?:is|are) marked FAIL \(interrupted\)", output)
    assert said, output
    assert {int(n) for n in said.group(1).split(", ")} <= {t.number for t in interrupted}
    client = client_for(run_dir)
    runs = client.search_runs([client.get_experiment_by_name("digits-mlp").experiment_id])
    statuses = {r.data.tags.get(tags.TRIAL_NUMBER, "parent"): r.info.status for r in runs}
    # A slot's next trial, claimed while its current one trained, has its run (or is
    # about to); a trial whose run was never made has none to end; every trial that
    # had a run ends it KILLED.
    with_runs = [t for t in interrupted if attrs.RUN_ID_ATTR in t.user_attrs]
    assert with_runs
    assert all(statuses[str(t.number)] == "KILLED" for t in with_runs), (statuses, output)
    assert set(statuses) <= {"parent"} | {str(t.number) for t in study.trials}
    assert statuses["parent"] == "KILLED"
    assert "RUNNING" not in statuses.values()
    # The same command, with a budget that is quick to reach, resumes the study.
    done = len([t for t in study.trials if t.state != optuna.trial.TrialState.FAIL])
    result = run_tuner("sweep", f"n_trials={done + len(interrupted)}", "trainer.max_epochs=2",
                       "tracking.report=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    study = load_study(run_dir, "digits-mlp")
    finished = [t for t in study.trials if t.state != optuna.trial.TrialState.FAIL]
    assert len(finished) == done + len(interrupted)
    assert sorted(t.number for t in study.trials) == list(range(len(study.trials)))
    for cut_short in interrupted:  # the rerun starts with the cut-short trials
        [repeat] = [t for t in study.trials
                    if t.user_attrs.get(attrs.RETRY_OF_ATTR) == cut_short.number]
        # A slot's next trial is claimed ahead but sampled only when the slot frees: cut
        # short before that, it has no params, and its repeat samples its own.
        assert repeat.params == cut_short.params or not cut_short.params
        assert repeat.params


def test_sigterm_during_start_up_says_no_trial_had_started(tmp_path):
    process = start(["sweep", "n_trials=3", "trainer.max_epochs=2"], tmp_path,
                    env={"PYTHONUNBUFFERED": "1"})
    try:
        first = process.stdout.readline()  # "study ...": the sweep is starting its slots
        assert first.startswith("study digits-mlp"), first
        time.sleep(0.3)  # inside the start-up (the slots' preflight takes seconds)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            stop(process)
    assert process.returncode == 130, output
    assert "no trial had started; run the same command again to start." in output
    assert "marked FAIL" not in output
    assert not (tmp_path / "runs").exists() or not [
        t for t in load_study(tmp_path / "runs", "digits-mlp").trials
        if t.state == optuna.trial.TrialState.RUNNING]


def test_a_second_ctrl_c_exits_at_once_and_leaves_a_resumable_study(tmp_path):
    """Ctrl-C at a terminal reaches the whole process group: the driver and its slot."""
    process = start(["sweep", "n_trials=40", "trainer.max_epochs=30", "tracking.report=false"],
                    tmp_path, env={"PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if line.startswith("trial ") or not line:
                break
        time.sleep(0.5)
        os.killpg(process.pid, signal.SIGINT)
        time.sleep(0.3)
        os.killpg(process.pid, signal.SIGINT)
        start_wait = time.monotonic()
        process.communicate(timeout=60)
        assert time.monotonic() - start_wait < 5  # not the 10 s grace of the first
    finally:
        if process.poll() is None:
            stop(process)
    # 130 when our handler ran; -SIGINT when the second signal landed after Python's
    # own exit had begun (CPython then leaves SIGINT to the default action).
    assert process.returncode in (130, -signal.SIGINT)
    run_dir = tmp_path / "runs"
    time.sleep(2)  # a slot may still be writing its trial's end when the driver is gone
    study = load_study(run_dir, "digits-mlp")  # the journal reads back
    result = run_tuner("sweep", f"n_trials={len(study.trials) + 1}", "trainer.max_epochs=2",
                       "tracking.report=false", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    study = load_study(run_dir, "digits-mlp")
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    assert sorted(t.number for t in study.trials) == list(range(len(study.trials)))
    client = client_for(run_dir)
    runs = client.search_runs([client.get_experiment_by_name("digits-mlp").experiment_id])
    assert "RUNNING" not in {r.info.status for r in runs}


@pytest.mark.parametrize("server", ["nothing listening", "listening but silent"])
@pytest.mark.parametrize("command", ["sweep", "worker"])
def test_an_unreachable_tracking_server_is_refused_within_seconds(server, command, tmp_path):
    with socket.socket() as silent:
        if server == "nothing listening":
            port = free_port()
        else:  # the kernel completes the handshake, and no one ever answers
            silent.bind(("127.0.0.1", 0))
            silent.listen(8)
            port = silent.getsockname()[1]
        start = time.monotonic()
        result = run_tuner(command, "tracking=server", "n_trials=1", cwd=tmp_path,
                           env={"MLFLOW_TRACKING_URI": f"http://me:hunter2@127.0.0.1:{port}"})
        seconds = time.monotonic() - start
    assert result.returncode == 2, result.stdout + result.stderr
    assert seconds < 10, f"took {seconds:.1f} s to give up"
    assert "tracking.tracking_uri: no MLflow tracking server answers at " \
           f"http://me:***@127.0.0.1:{port}" in result.stderr
    assert "hunter2" not in result.stdout + result.stderr
    assert files_under(tmp_path) == []  # no study, no MLflow store, no folder

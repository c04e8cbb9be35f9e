"""Scheduled re-tuning in rounds: each execution of a job is a round with a study of its
own, warm-started from the earlier rounds, and the champion moves only when the round's
best beats it on the round's own data. Every round here is the real command a timetable
runs (`tuner schedule round NAME`), in a subprocess, on real stores."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
import yaml
from croniter import croniter

from tests.conftest import (
    FIXTURE_CONF,
    client_for,
    fixtures_env,
    load_study,
    tuner_command,
    tuner_here,
)
from tuner.core import attrs
from tuner.tracking import tags

SCHEDULE = "tuner-schedule.yaml"
# Small rounds: three trials of two epochs on (shifted) digits.
ROUND = ("--config-dir", "conf", "--trials", "3", "--warm-start", "1", "--",
         "data=shifted_digits", "search=width_only", "trainer.max_epochs=2",
         "tracking.report=false", "pruner=none")


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copytree(FIXTURE_CONF, project / "conf")
    return project


def _tuner(project: Path, *args: str):
    return tuner_here(*args, cwd=project, env=fixtures_env())


def _history(project: Path, job: str) -> list[dict]:
    out = json.loads((project / "tuner-schedule-history" / f"{job}.json").read_text())
    return out["rounds"]


def _edit_job(project: Path, job: str, **changes) -> None:
    """A person edits the schedule file between two rounds."""
    data = yaml.safe_load((project / SCHEDULE).read_text())
    for key, value in changes.items():
        if key == "overrides_add":
            data["jobs"][job]["overrides"] += value
        else:
            data["jobs"][job][key] = value
    (project / SCHEDULE).write_text(yaml.safe_dump(data))


def _champion_version(project: Path, job: str) -> str:
    client = client_for(project / "runs")
    return str(client.get_model_version_by_alias(job, "champion").version)


def test_three_rounds_warm_start_and_a_champion_that_must_win_on_todays_data(tmp_path):
    project = _project(tmp_path)
    added = _tuner(project, "schedule", "add", "nightly", "--cron", "0 2 * * *", *ROUND)
    assert added.returncode == 0, added.stderr

    # Round 1: the first champion.
    first = _tuner(project, "schedule", "round", "nightly")
    assert first.returncode == 0, first.stdout + first.stderr
    [r1] = _history(project, "nightly")
    assert r1["status"] == "done" and r1["study"] == "nightly-r1"
    assert r1["decision"] == "promoted" and r1["champion_before"] is None
    assert r1["trials"]["complete"] + r1["trials"]["pruned"] == 3
    assert _champion_version(project, "nightly") == "1"

    # Round 2: the labels changed meaning. It starts from round 1's best params; the old
    # champion, measured on the new data, is far worse than the round's best: replaced.
    _edit_job(project, "nightly", overrides_add=["data.label_shift=3"])
    second = _tuner(project, "schedule", "round", "nightly")
    assert second.returncode == 0, second.stdout + second.stderr
    r2 = _history(project, "nightly")[1]
    study2 = load_study(project / "runs", "nightly-r2")
    first_trial = study2.trials[0]
    assert first_trial.params == r1["best"]["params"]
    assert first_trial.user_attrs["warm_start_from"] == f"nightly-r1#{r1['best']['trial']}"
    assert r2["warm_started"] == [f"nightly-r1#{r1['best']['trial']}"]
    assert r2["champion_now"] < 0.3 < r1["best"]["value"]  # the old champion on new data
    assert r2["decision"] == "promoted" and r2["challenger"] > r2["champion_now"]
    assert r2["champion_before"]["version"] == "1" and r2["champion_after"]["version"] == "2"
    assert _champion_version(project, "nightly") == "2"

    # Round 3: the same data as round 2, and a margin no challenger can clear: kept.
    _edit_job(project, "nightly", margin=0.5)
    third = _tuner(project, "schedule", "round", "nightly")
    assert third.returncode == 0, third.stdout + third.stderr
    r3 = _history(project, "nightly")[2]
    assert r3["decision"] == "kept"
    assert r3["champion_now"] > 0.5  # measured on today's data, where it still works
    assert r3["champion_after"]["version"] == "2" == _champion_version(project, "nightly")

    # The rounds share the job's experiment (one runs table, not one experiment a night),
    # with the figures and the decision on each round's parent run.
    client = client_for(project / "runs")
    assert [e.name for e in client.search_experiments()
            if e.name.startswith("nightly")] == ["nightly"]
    experiment = client.get_experiment_by_name("nightly").experiment_id
    parents = client.search_runs([experiment], filter_string="tags.`tuner.job` = 'nightly'",
                                 order_by=["tags.`tuner.round` ASC"])
    assert [p.info.run_name for p in parents] == ["nightly-r1", "nightly-r2", "nightly-r3"]
    assert [p.data.tags[tags.ROUND] for p in parents] == ["1", "2", "3"]
    assert [p.data.tags[tags.DECISION] for p in parents] == ["promoted", "promoted", "kept"]
    assert parents[2].data.metrics["champion_val_acc_on_round_data"] == pytest.approx(
        r3["champion_now"])

    history = _tuner(project, "schedule", "history", "nightly")
    assert history.returncode == 0, history.stderr
    lines = history.stdout.splitlines()
    assert [line.split()[0] for line in lines[1:4]] == ["1", "2", "3"]
    assert "v1 (first)" in lines[1] and "v1 -> v2" in lines[2] and "v2 kept" in lines[3]
    assert "promoted" in lines[2] and "kept" in lines[3]


def test_a_wall_time_budget_stops_between_trials_and_fails_nothing(tmp_path):
    project = _project(tmp_path)
    added = _tuner(project, "schedule", "add", "timed", "--cron", "@daily", "--trials", "500",
                   "--time", "8s", "--", "trainer.max_epochs=1", "tracking.report=false")
    assert added.returncode == 0, added.stderr
    result = _tuner(project, "schedule", "round", "timed")
    assert result.returncode == 0, result.stdout + result.stderr
    [entry] = _history(project, "timed")
    assert entry["status"] == "done" and entry["stopped"] == "timeout"
    trials = load_study(project / "runs", "timed-r1").trials
    assert 0 < len(trials) < 500
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)  # none cut short


def _start_round(project: Path) -> subprocess.Popen:
    return subprocess.Popen([*tuner_command(), "schedule", "round", "slow"], cwd=project,
                            env={**os.environ, **fixtures_env(), "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _wait_for_running_trial(project: Path, study: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        journal = project / "runs" / "optuna.journal"
        if journal.exists():
            try:
                trials = load_study(project / "runs", study).trials
            except KeyError:
                trials = []
            if any(t.state == optuna.trial.TrialState.RUNNING for t in trials):
                return
        time.sleep(0.5)
    raise AssertionError(f"no trial of {study} started in {timeout} s")


def test_an_overlapping_round_is_refused_and_a_killed_round_is_reaped(tmp_path):
    project = _project(tmp_path)
    added = _tuner(project, "schedule", "add", "slow", "--cron", "@daily", "--config-dir",
                   "conf", "--trials", "2", "--", "model=slow_mlp", "search=width_only",
                   "pruner=none", "trainer.max_epochs=40", "tracking.report=false")
    assert added.returncode == 0, added.stderr
    running = _start_round(project)
    try:
        _wait_for_running_trial(project, "slow-r1")
        overlap = _tuner(project, "schedule", "round", "slow")
        assert overlap.returncode == 1, overlap.stdout + overlap.stderr
        assert "a round of job slow is already running" in overlap.stderr
        assert [r["round"] for r in _history(project, "slow")] == [1]  # nothing recorded
    finally:
        os.killpg(running.pid, signal.SIGKILL)  # the round dies mid-trial, unrecorded
        running.wait()
    assert _history(project, "slow")[0]["status"] == "running"

    # The next round (made quick) reaps the killed one before it starts.
    _edit_job(project, "slow", overrides=["search=width_only", "trainer.max_epochs=1",
                                          "tracking.report=false"])
    after = _tuner(project, "schedule", "round", "slow")
    assert after.returncode == 0, after.stdout + after.stderr
    r1, r2 = _history(project, "slow")
    assert r1["status"] == "crashed" and "killed" in r1["why"]
    assert r2["status"] == "done" and r2["study"] == "slow-r2"
    killed = load_study(project / "runs", "slow-r1").trials
    assert not [t for t in killed if t.state == optuna.trial.TrialState.RUNNING]
    failed = [t for t in killed if t.state == optuna.trial.TrialState.FAIL]
    assert failed and all(t.user_attrs[attrs.FAIL_REASON_ATTR].startswith("abandoned")
                          for t in failed)
    run = client_for(project / "runs").get_run(failed[0].user_attrs[attrs.RUN_ID_ATTR])
    assert run.info.status == "KILLED"


def test_rounds_of_one_job_exclude_each_other_on_postgres(postgres):
    from omegaconf import OmegaConf

    from tuner.core.errors import AlreadyRunning
    from tuner.study.exclusive import exclusive

    storage = OmegaConf.create({"url": postgres.url(with_password=True)})
    held = exclusive(storage, "round-nightly", "a round of job nightly")
    held.__enter__()
    try:
        with (pytest.raises(AlreadyRunning, match="a round of job nightly is already running"),
              exclusive(storage, "round-nightly", "a round of job nightly")):
            pass
        with exclusive(storage, "round-other", "a round of job other"):
            pass  # another job's lock is another lock
    finally:
        held.__exit__(None, None, None)
    with exclusive(storage, "round-nightly", "a round of job nightly"):
        pass  # released when the holder ended


EXPRESSIONS = ["0 2 * * *", "*/15 9-17 * * 1-5", "30 4 1,15 * *", "0 0 * jan,jul sun",
               "@hourly", "@weekly"]


@pytest.mark.parametrize("cron", EXPRESSIONS)
def test_exports_are_accepted_by_the_tools(tmp_path, cron):
    project = _project(tmp_path)
    added = _tuner(project, "schedule", "add", "nightly", "--cron", cron, "--trials", "2")
    assert added.returncode == 0, added.stderr

    line = _tuner(project, "schedule", "export", "nightly", "--format", "crontab")
    assert line.returncode == 0, line.stderr
    fields = line.stdout.strip().split(None, 5)
    expression = " ".join(fields[:5]) if not fields[0].startswith("@") else fields[0]
    assert croniter.is_valid(expression)
    assert f"schedule round nightly --file {project / SCHEDULE}" in line.stdout

    out = tmp_path / "units"
    units = _tuner(project, "schedule", "export", "nightly", "--format", "systemd",
                   "--out", str(out))
    assert units.returncode == 0, units.stderr
    service, timer = out / "tuner-nightly.service", out / "tuner-nightly.timer"
    if shutil.which("systemd-analyze"):
        verified = subprocess.run(["systemd-analyze", "verify", str(service), str(timer)],
                                  capture_output=True, text=True, timeout=60)
        assert verified.returncode == 0, verified.stderr
        calendar = next(line.split("=", 1)[1] for line in timer.read_text().splitlines()
                        if line.startswith("OnCalendar="))
        elapses = subprocess.run(["systemd-analyze", "calendar", "--iterations=5", calendar],
                                 capture_output=True, text=True, timeout=60,
                                 env={**os.environ, "TZ": "UTC"})
        assert elapses.returncode == 0, elapses.stderr
        told = [line.split(":", 1)[1].strip() for line in elapses.stdout.splitlines()
                if line.strip().startswith(("Next elapse:", "Iter. #"))]
        expected = croniter(cron, _utc_now()).all_next(type(_utc_now()))
        assert told == [f"{next(expected):%a %Y-%m-%d %H:%M:%S} UTC" for _ in told]
    assert "Type=oneshot" in service.read_text()

    job = _tuner(project, "schedule", "export", "nightly", "--format", "kubernetes",
                 "--image", "registry.example.com/team/project:1.4")
    assert job.returncode == 0, job.stderr
    cronjob = yaml.safe_load(job.stdout)
    assert cronjob["kind"] == "CronJob" and cronjob["apiVersion"] == "batch/v1"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert cronjob["spec"]["schedule"] == line.stdout.split(" cd ")[0]
    [container] = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["command"][:4] == ["tuner", "schedule", "round", "nightly"]
    assert container["image"] == "registry.example.com/team/project:1.4"
    # The job keeps its study and MLflow in local files, which a pod loses: said.
    assert "warning: job nightly keeps the study (" in job.stderr
    assert "storage=postgres and tracking=server" in job.stderr
    with_servers = _tuner(project, "schedule", "add", "shared", "--cron", cron, "--",
                          "storage=postgres", "tracking=server")
    assert with_servers.returncode == 0, with_servers.stderr
    quiet = _tuner(project, "schedule", "export", "shared", "--format", "kubernetes",
                   "--image", "registry.example.com/team/project:1.4")
    assert quiet.returncode == 0 and "warning" not in quiet.stderr, quiet.stderr


def _utc_now():
    from datetime import UTC, datetime

    return datetime.now(UTC).replace(second=0, microsecond=0)


def test_a_cron_that_systemd_cannot_say_is_refused_for_systemd_only(tmp_path):
    project = _project(tmp_path)
    added = _tuner(project, "schedule", "add", "both", "--cron", "0 3 13 * fri")
    assert added.returncode == 0, added.stderr
    refused = _tuner(project, "schedule", "export", "both", "--format", "systemd",
                     "--out", str(tmp_path / "units"))
    assert refused.returncode == 2
    assert "day of the month and the day of the week" in refused.stderr
    assert not (tmp_path / "units").exists()
    assert _tuner(project, "schedule", "export", "both", "--format", "crontab").returncode == 0


@pytest.mark.parametrize(("args", "says"), [
    (("add", "j", "--cron", "61 * * * *"), "is not a cron expression"),
    (("add", "j", "--cron", "@daily", "--trials", "0"), "--trials"),
    (("add", "j", "--cron", "@daily", "--time", "-5"), "--time"),
    (("add", "j", "--cron", "@daily", "--time", "soon"), "--time"),
    (("add", "j", "--cron", "@daily", "--margin", "a lot"), "--margin"),
    (("add", "j", "--cron", "@daily", "--warm-start", "-1"), "--warm-start"),
    (("add", "j", "--cron", "@daily", "--", "study_name=mine"), "study_name"),
    (("round", "nope"), "no such job"),
    (("history", "nope"), "no such job"),
    (("export", "nope", "--format", "crontab"), "no such job"),
    (("export", "kept", "--format", "kubernetes"), "--image"),
])
def test_bad_schedule_input_is_refused_and_nothing_is_written(tmp_path, args, says):
    project = _project(tmp_path)
    kept = _tuner(project, "schedule", "add", "kept", "--cron", "@daily", "--trials", "2")
    assert kept.returncode == 0, kept.stderr
    before = {p: p.read_bytes() for p in project.rglob("*") if p.is_file()}
    result = _tuner(project, "schedule", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert says in result.stderr
    after = {p: p.read_bytes() for p in project.rglob("*") if p.is_file()}
    assert after == before
    assert not (project / "runs").exists()

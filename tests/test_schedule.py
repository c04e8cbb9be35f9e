"""`tuner schedule`: jobs checked at add time, confined to the project's configs at add
and at run time, and run for real by `tuner schedule run --once` (a real sweep)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from tests.conftest import FIXTURE_CONF, load_study, tuner_here

SCHEDULE = "tuner-schedule.yaml"
TINY = ("n_trials=2", "trainer.max_epochs=1", "tracking.report=false")


def _state(project: Path) -> dict:
    return json.loads((project / "tuner-schedule.state.json").read_text())["jobs"]


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    return project


def test_add_list_remove_round_trip(tmp_path):
    project = _project(tmp_path)
    shutil.copytree(FIXTURE_CONF, project / "conf")
    added = tuner_here("schedule", "add", "nightly", "--cron", "0 3 * * *", "--config-dir",
                      "conf", "--", "n_trials=60", "model=cnn", "search=cnn", cwd=project)
    assert added.returncode == 0, added.stderr
    assert "next run" in added.stdout
    second = tuner_here("schedule", "add", "hourly", "--cron", "@hourly", cwd=project)
    assert second.returncode == 0, second.stderr

    jobs = yaml.safe_load((project / SCHEDULE).read_text())["jobs"]
    assert jobs["nightly"]["cron"] == "0 3 * * *"
    assert jobs["nightly"]["config_dir"] == "conf"
    assert jobs["nightly"]["overrides"] == ["n_trials=60", "model=cnn", "search=cnn"]
    assert "config_dir" not in jobs["hourly"] and jobs["hourly"]["overrides"] == []

    listing = tuner_here("schedule", "list", cwd=project)
    assert listing.returncode == 0, listing.stderr
    assert "nightly: cron '0 3 * * *', config_dir conf" in listing.stdout
    assert "overrides: n_trials=60 model=cnn search=cnn" in listing.stdout
    assert " 03:00 " in listing.stdout  # the next run of nightly
    assert listing.stdout.count("last run:  never") == 2

    duplicate = tuner_here("schedule", "add", "nightly", "--cron", "* * * * *", cwd=project)
    assert duplicate.returncode == 2 and "jobs.nightly: already exists" in duplicate.stderr

    removed = tuner_here("schedule", "remove", "nightly", cwd=project)
    assert removed.returncode == 0, removed.stderr
    assert list(yaml.safe_load((project / SCHEDULE).read_text())["jobs"]) == ["hourly"]
    assert "nightly" not in tuner_here("schedule", "list", cwd=project).stdout
    missing = tuner_here("schedule", "remove", "nightly", cwd=project)
    assert missing.returncode == 2 and "no such job" in missing.stderr
    assert "jobs in the file: hourly" in missing.stderr


def test_bad_cron_name_and_override_are_refused_before_writing(tmp_path):
    project = _project(tmp_path)
    cases = [
        (["bad_cron", "--cron", "61 * * * *"], "--cron: '61 * * * *' is not a cron"),
        (["seconds", "--cron", "* * * * * *"], "is not a cron expression"),
        (["1bad-name", "--cron", "* * * * *"], "NAME: '1bad-name' is not a job name"),
        (["typo", "--cron", "* * * * *", "--", "n_trials=two"], "command line (n_trials=two)"),
        (["unknown", "--cron", "* * * * *", "--", "trainer.max_epoch=1"], "max_epoch"),
        (["option", "--cron", "* * * * *", "--", "model=nope"], "no model option 'nope'"),
    ]
    for args, expected in cases:
        result = tuner_here("schedule", "add", *args, cwd=project)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert expected in result.stderr, (args, result.stderr)
        assert "nothing was written" in result.stderr
        assert sorted(p.name for p in project.iterdir()) == [], args  # no file, no runs/


def test_config_outside_the_project_is_refused_at_add_time(tmp_path):
    project = _project(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(FIXTURE_CONF, elsewhere)
    (project / "linked").symlink_to(elsewhere, target_is_directory=True)
    (project / "sub").mkdir()
    for config_dir in (str(elsewhere), "../elsewhere", "sub/../../elsewhere", "linked"):
        result = tuner_here("schedule", "add", "job", "--cron", "* * * * *", "--config-dir",
                           config_dir, cwd=project)
        assert result.returncode == 2, (config_dir, result.stderr)
        assert "--config-dir" in result.stderr and "outside the project" in result.stderr
        assert f"inside the project: {project.resolve()}" in result.stderr  # what is allowed
    for override in ("hydra.searchpath=[file://" + str(elsewhere) + "]",
                     "model=../../../elsewhere/model/tiny", "model._target_=os.system"):
        result = tuner_here("schedule", "add", "job", "--cron", "* * * * *", "--", override,
                           cwd=project)
        assert result.returncode == 2, (override, result.stderr)
        assert f"'{override}'" in result.stderr
    assert not (project / SCHEDULE).exists()


def test_hand_edited_outside_config_dir_is_refused_at_run_time(tmp_path):
    project = _project(tmp_path)
    shutil.copytree(FIXTURE_CONF, tmp_path / "elsewhere")
    (project / SCHEDULE).write_text(yaml.safe_dump({"jobs": {"sneaky": {
        "cron": "* * * * *", "config_dir": "../elsewhere", "overrides": list(TINY)}}}))
    result = tuner_here("schedule", "run", "--once", cwd=project)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "refused sneaky" in result.stdout and "outside the project" in result.stdout
    last = _state(project)["sneaky"]["last_run"]
    assert last["status"] == "refused" and last["exit_code"] is None
    assert "jobs.sneaky.config_dir" in last["reason"]
    assert not (project / "runs").exists() and not (project / "tuner-schedule-logs").exists()
    listing = tuner_here("schedule", "list", cwd=project)
    assert "refused at" in listing.stdout and "outside the project" in listing.stdout


def test_run_once_runs_a_due_job_as_a_real_round(tmp_path):
    project = _project(tmp_path)
    added = tuner_here("schedule", "add", "every_minute", "--cron", "* * * * *", "--",
                      *TINY, cwd=project)
    assert added.returncode == 0, added.stderr
    assert not (project / "runs").exists()  # add checks; it does not sweep

    result = tuner_here("schedule", "run", "--once", cwd=project)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "started every_minute" in result.stdout
    assert "every_minute ended: exit 0 (ok)" in result.stdout

    last = _state(project)["every_minute"]["last_run"]
    assert last["status"] == "ok" and last["exit_code"] == 0
    log = Path(last["log"])
    assert log.parent == project / "tuner-schedule-logs" / "every_minute"
    text = log.read_text()
    assert "round 1 of job every_minute" in text and "champion promoted" in text
    [round_1] = json.loads((project / "tuner-schedule-history" / "every_minute.json")
                           .read_text())["rounds"]
    assert round_1["status"] == "done" and round_1["due"] == last["due"]
    trials = load_study(project / "runs", "every_minute-r1").trials  # a study per round
    assert len(trials) == 2 and all(t.state.is_finished() for t in trials)
    assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}

    listing = tuner_here("schedule", "list", cwd=project)
    assert "ok, exit 0" in listing.stdout


def test_schedule_help_is_real():
    import subprocess
    import sys

    for args in ([], ["add"], ["list"], ["remove"], ["run"], ["round"], ["history"],
                 ["export"]):
        result = subprocess.run([sys.executable, "-m", "tuner", "schedule", *args, "--help"],
                                capture_output=True, text=True, check=True)
        assert "usage: tuner schedule" in result.stdout
    assert "--cron EXPR" in subprocess.run(
        [sys.executable, "-m", "tuner", "schedule", "add", "--help"],
        capture_output=True, text=True).stdout


def test_sigterm_stops_the_loop_and_its_running_job_cleanly(tmp_path):
    import os
    import signal
    import subprocess
    import time

    from tests.conftest import tuner_command

    project = _project(tmp_path)
    added = tuner_here("schedule", "add", "long", "--cron", "* * * * *", "--",
                      "n_trials=500", "trainer.max_epochs=1", "tracking.report=false",
                      cwd=project)
    assert added.returncode == 0, added.stderr
    scheduler = subprocess.Popen([*tuner_command(), "schedule", "run"], cwd=project,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        logs = project / "tuner-schedule-logs" / "long"
        deadline = time.monotonic() + 180
        # Stop it once the sweep has planned its study (tuner's SIGTERM handling is on).
        while not any("study long" in p.read_text() or "study digits-mlp" in p.read_text()
                      for p in logs.glob("*.log")):
            assert time.monotonic() < deadline and scheduler.poll() is None
            time.sleep(0.5)
        time.sleep(3)
        scheduler.send_signal(signal.SIGTERM)
        output, _ = scheduler.communicate(timeout=180)
    finally:
        if scheduler.poll() is None:
            scheduler.kill()
    assert scheduler.returncode == 0, output
    assert "stopping long" in output and "scheduler stopped" in output
    last = _state(project)["long"]["last_run"]
    assert last["status"] == "interrupted" and last["exit_code"] == 130, (last, output)
    assert "running" not in _state(project)["long"]
    assert "interrupted" in Path(last["log"]).read_text()  # tuner's own SIGTERM message


def test_a_second_scheduler_on_the_same_file_is_refused_by_name(tmp_path):
    """Two `tuner schedule run` on one schedule would run each job twice: the second is
    refused, naming the file it was given (here a .yml one)."""
    import os
    import subprocess
    import time

    from tests.conftest import tuner_command

    project = _project(tmp_path)
    added = tuner_here("schedule", "add", "nightly", "--cron", "0 3 * * *", "--file",
                      "jobs.yml", "--", *TINY, cwd=project)
    assert added.returncode == 0, added.stderr
    first = subprocess.Popen([*tuner_command(), "schedule", "run", "--file", "jobs.yml"],
                             cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 120
        while not (project / "jobs.lock").exists():  # taken before the loop starts
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.2)
        time.sleep(1)
        second = tuner_here("schedule", "run", "--file", "jobs.yml", "--once", cwd=project)
    finally:
        first.terminate()
        first.communicate(timeout=60)
    assert second.returncode == 1, second.stdout + second.stderr
    assert "another `tuner schedule run` is running the jobs of jobs.yml" in second.stderr
    assert "jobs.yaml" not in second.stderr

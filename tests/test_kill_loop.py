"""The sweep killed with SIGKILL at random points, three times, then left to finish.

Odd kills hit only the driver (its slot notices and ends its trial as interrupted);
even kills hit the whole process group, so a trial is left RUNNING with nobody to end
it and the next command must find it by its lease. Whatever the timing: completed work
never goes backwards, and the end state holds the budget invariant.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

from optuna.trial import TrialState

from tests.conftest import client_for, load_study, run_tuner, tuner_command
from tuner.retries import cut_short, root_of
from tuner.tracking import tags

ARGS = ("sweep", "n_trials=12", "trainer.max_epochs=3", "pruner=none",
        "tracking.report=false")


def completed(run_dir: Path) -> dict[int, list[float]]:
    if not (run_dir / "optuna.journal").exists():
        return {}
    try:
        study = load_study(run_dir)
    except KeyError:  # killed before the study was created
        return {}
    return {t.number: t.values for t in study.trials if t.state == TrialState.COMPLETE}


def wait_until_gone(group: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.killpg(group, signal.SIGKILL)
    raise AssertionError(f"processes of the killed sweep still alive after {timeout} s")


def test_three_random_kills_lose_no_completed_work(tmp_path):
    run_dir = tmp_path / "runs"
    chance = random.Random(20261123)
    before: dict[int, list[float]] = {}
    for kill in range(3):
        process = subprocess.Popen([*tuner_command(), *ARGS], cwd=tmp_path,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        time.sleep(chance.uniform(6, 14))
        if kill % 2 == 0:
            os.kill(process.pid, signal.SIGKILL)  # the driver only
        else:
            os.killpg(process.pid, signal.SIGKILL)  # the driver and its slots
        process.wait()
        wait_until_gone(process.pid)
        after = completed(run_dir)
        for number, values in before.items():
            assert after.get(number) == values, f"kill {kill + 1} lost trial {number}"
        before = after

    result = run_tuner(*ARGS, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    study = load_study(run_dir)
    trials = study.trials
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 12
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    for number, values in before.items():
        assert trials[number].state == TrialState.COMPLETE and trials[number].values == values
    # Every trial cut short by a kill was repeated with its params.
    for failed in (t for t in trials if t.state == TrialState.FAIL):
        assert cut_short(failed), failed.user_attrs.get(tags.FAIL_REASON_ATTR)
        repeats = [t for t in trials if root_of(t) == root_of(failed) and t.number > failed.number]
        assert repeats and all(r.params == failed.params for r in repeats)

    client = client_for(run_dir)
    runs = client.search_runs([client.get_experiment_by_name("digits-mlp").experiment_id],
                              max_results=1000)
    assert "RUNNING" not in {r.info.status for r in runs}
    trial_runs = [r for r in runs if r.data.tags.get(tags.ROLE) == "trial"]
    numbers = [int(r.data.tags[tags.TRIAL_NUMBER]) for r in trial_runs]
    assert len(numbers) == len(set(numbers)), "a trial has two runs"
    by_number = {int(r.data.tags[tags.TRIAL_NUMBER]): r for r in trial_runs}
    for t in trials:
        if t.state != TrialState.FAIL:
            assert by_number[t.number].info.status == "FINISHED"

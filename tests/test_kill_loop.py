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
from collections import defaultdict
from pathlib import Path

from optuna.trial import TrialState

from tests.conftest import client_for, load_study, tuner_command, tuner_here, wait_until_gone
from tuner.core import attrs
from tuner.study.retries import cut_short, root_of
from tuner.tracking import tags

# A checkpoint every epoch: a kill mid-trial leaves one, and its repeat resumes from it.
ARGS = ("sweep", "n_trials=12", "trainer.max_epochs=3", "pruner=none",
        "tracking.report=false", "resume_checkpoint_s=0")


def completed(run_dir: Path) -> dict[int, list[float]]:
    if not (run_dir / "optuna.journal").exists():
        return {}
    try:
        study = load_study(run_dir)
    except KeyError:  # killed before the study was created
        return {}
    return {t.number: t.values for t in study.trials if t.state == TrialState.COMPLETE}


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

    result = tuner_here(*ARGS, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    study = load_study(run_dir)
    trials = study.trials
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 12
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    for number, values in before.items():
        assert trials[number].state == TrialState.COMPLETE and trials[number].values == values
    # Every trial cut short by a kill was repeated with its params. A slot's next trial
    # is claimed ahead but sampled only when the slot frees: killed before that, it has
    # no params, and its repeat samples its own (as after Ctrl-C: test_cli).
    for failed in (t for t in trials if t.state == TrialState.FAIL):
        assert cut_short(failed), failed.user_attrs.get(attrs.FAIL_REASON_ATTR)
        repeats = [t for t in trials if root_of(t) == root_of(failed) and t.number > failed.number]
        assert repeats and all(r.params for r in repeats)
        assert not failed.params or all(r.params == failed.params for r in repeats), (
            failed.number, failed.params, [r.params for r in repeats])

    # Every chain ended, so no checkpoint is left to resume from.
    assert not list(run_dir.glob("trials/*/*/resume*"))

    client = client_for(run_dir)
    runs = client.search_runs([client.get_experiment_by_name("digits-mlp").experiment_id],
                              max_results=1000)
    assert "RUNNING" not in {r.info.status for r in runs}
    trial_runs = {r.info.run_id: r for r in runs if r.data.tags.get(tags.ROLE) == "trial"}
    numbers = [int(r.data.tags[tags.TRIAL_NUMBER]) for r in trial_runs.values()]
    assert len(numbers) == len(set(numbers)), "a trial has two runs"
    # One run per attempt that started at epoch 0; a repeat that resumed a trial cut
    # short continues its run, so the attempts sharing a run are one chain, in which
    # every attempt after the first resumed, and the run names the last of them.
    sharing: dict[str, list] = defaultdict(list)
    for t in trials:
        if attrs.RUN_ID_ATTR in t.user_attrs:
            sharing[t.user_attrs[attrs.RUN_ID_ATTR]].append(t)
    assert set(sharing) <= set(trial_runs)
    for run_id, attempts in sharing.items():
        assert len({root_of(t) for t in attempts}) == 1, f"run {run_id} spans two chains"
        assert attrs.RESUMED_FROM_EPOCH_ATTR not in attempts[0].user_attrs
        assert all(attrs.RESUMED_FROM_EPOCH_ATTR in t.user_attrs for t in attempts[1:])
        assert trial_runs[run_id].data.tags[tags.TRIAL_NUMBER] == str(attempts[-1].number)
        steps = [m.step for m in client.get_metric_history(run_id, "val_loss")]
        assert steps == sorted(set(steps)), f"run {run_id} logged a step twice"
    for t in trials:
        if t.state != TrialState.FAIL:
            assert trial_runs[t.user_attrs[attrs.RUN_ID_ATTR]].info.status == "FINISHED"

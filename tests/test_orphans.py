"""No RUNNING run survives a crash: runs found by their tags (tuner.tracking.orphans)."""

from __future__ import annotations

from optuna.trial import TrialState

from tests.conftest import client_for, load_study, orphan_trial, sweep
from tuner.core import attrs
from tuner.tracking import tags


def test_a_run_made_just_before_its_process_died_is_ended_with_its_reaped_trial(tmp_path):
    """Killed between the run's creation and its link to the trial: the trial does not
    name its run, and the reaper finds it by its trial number."""
    run_dir = tmp_path / "runs"
    sweep("n_trials=1", run_dir=run_dir)
    orphan, _, run_id = orphan_trial(run_dir, linked=False)
    assert attrs.RUN_ID_ATTR not in load_study(run_dir).trials[orphan.number].user_attrs

    sweep("n_trials=2", run_dir=run_dir)
    reaped = load_study(run_dir).trials[orphan.number]
    assert reaped.state == TrialState.FAIL
    assert reaped.user_attrs[attrs.FAIL_REASON_ATTR].startswith("abandoned")
    run = client_for(run_dir).get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags[tags.FAIL_REASON].startswith("abandoned")


def test_a_run_left_running_by_an_ended_trial_is_ended_when_the_next_sweep_starts(tmp_path):
    """The trial was ended (reaped) without its run, which nobody names: the next driver
    ends it at its start."""
    run_dir = tmp_path / "runs"
    sweep("n_trials=1", run_dir=run_dir)
    orphan, _, run_id = orphan_trial(run_dir, linked=False)
    study = load_study(run_dir)
    study.tell(orphan.number, state=TrialState.FAIL)  # someone ended it, not seeing the run

    sweep("n_trials=2", run_dir=run_dir)
    run = client_for(run_dir).get_run(run_id)
    assert run.info.status == "KILLED"
    assert "its trial ended without it" in run.data.tags[tags.FAIL_REASON]
    finished = [r for r in client_for(run_dir).search_runs(
        [run.info.experiment_id]) if r.data.tags.get(tags.ROLE) == "trial"]
    assert "RUNNING" not in {r.info.status for r in finished}


def test_a_linked_run_whose_recorder_died_is_ended_at_once_and_a_living_ones_is_left(tmp_path):
    """A trial told how it ended by a process killed before it ended the trial's run
    (a reaper, a driver): the next sweep ends the run at once, as the trial ended. A
    trial whose recorder still lives is left to it: it ends its run itself."""
    import os
    import socket

    from tuner.study.trial_attrs import set_trial_attrs, trial_attr

    run_dir = tmp_path / "runs"
    sweep("n_trials=1", run_dir=run_dir)
    dead_ones, _, dead_run = orphan_trial(run_dir, linked=True)
    living_ones, _, living_run = orphan_trial(run_dir, linked=True)
    study = load_study(run_dir)
    reason = "abandoned: its process died"
    dead = trial_attr(study.trials[dead_ones.number], attrs.OWNER_ATTR)  # an exited pid
    for trial, recorder in ((dead_ones, dead),
                            (living_ones, f"{socket.gethostname()}:{os.getpid()}")):
        set_trial_attrs(trial, {attrs.SUPERVISOR_ATTR: recorder,
                                attrs.FAIL_REASON_ATTR: reason})
        study.tell(trial.number, state=TrialState.FAIL)  # told; its run not ended yet

    sweep("n_trials=3", run_dir=run_dir)
    client = client_for(run_dir)
    ended = client.get_run(dead_run)
    assert ended.info.status == "KILLED"
    assert ended.data.tags[tags.FAIL_REASON] == reason
    assert client.get_run(living_run).info.status == "RUNNING"

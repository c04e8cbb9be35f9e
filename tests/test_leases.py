"""When a RUNNING trial counts as abandoned (tuner.study.leases)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from tuner.core import attrs
from tuner.study.leases import owner_id_of, stale_reason


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _running(owner: str, supervisor: str | None) -> optuna.trial.FrozenTrial:
    lease = {attrs.OWNER_ATTR: owner, attrs.LEASE_ATTR: time.time() + 60}
    if supervisor is not None:
        lease[attrs.SUPERVISOR_ATTR] = supervisor
    return create_trial(state=TrialState.RUNNING, params={"x": 0.5},
                        distributions={"x": FloatDistribution(0, 1)}, system_attrs=lease)


def test_a_dead_slot_whose_driver_lives_is_left_to_its_driver():
    # The driver records the trial with the slot's exit status (e.g. SIGSEGV); another
    # slot reaping it at the same moment raced it (and wrote a vaguer reason).
    trial = _running(owner_id_of(_dead_pid()), supervisor=owner_id_of(os.getpid()))
    assert stale_reason(trial) is None


def test_a_dead_slot_whose_driver_died_too_is_abandoned_at_once():
    dead = owner_id_of(_dead_pid())
    reason = stale_reason(_running(dead, supervisor=owner_id_of(_dead_pid())))
    assert reason == f"its process ({dead}) died"
    assert stale_reason(_running(dead, supervisor=None)) == reason  # older trials


def test_a_live_driver_does_not_hold_a_trial_past_its_lease():
    trial = _running(owner_id_of(_dead_pid()), supervisor=owner_id_of(os.getpid()))
    assert stale_reason(trial, now=time.time() + 120).startswith("its lease ran out")


def _journal(path) -> optuna.storages.JournalStorage:
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


def test_a_trials_attributes_written_at_once_read_back_everywhere(tmp_path):
    from tuner.study.trial_attrs import set_attrs, set_trial_attrs, trial_attr

    storage = _journal(tmp_path / "optuna.journal")
    study = optuna.create_study(study_name="s", storage=storage)
    trial = study.ask()
    before = (tmp_path / "optuna.journal").read_text().count("\n")
    set_trial_attrs(trial, {"seed": 7, attrs.CONFIG_ATTR: "a: 1\n", "run_id": "abc"})
    # One line per attribute, as Optuna writes them, appended together.
    assert (tmp_path / "optuna.journal").read_text().count("\n") == before + 3
    assert trial.user_attrs == {"seed": 7, "run_id": "abc"}
    # A fresh reader (another worker, the dashboard) replays them with stock Optuna:
    # the config as a system attribute, which optuna-dashboard does not show.
    fresh = optuna.load_study(study_name="s", storage=_journal(tmp_path / "optuna.journal"))
    assert fresh.trials[0].user_attrs == {"seed": 7, "run_id": "abc"}
    assert fresh.trials[0].system_attrs == {attrs.CONFIG_ATTR: "a: 1\n"}
    assert trial_attr(fresh.trials[0], attrs.CONFIG_ATTR) == "a: 1\n"

    study.tell(trial, 1.0)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        set_attrs(storage, trial._trial_id, {"late": 1, "later": 2})
    # Every line of the refused write was read back: no later call trips over them.
    assert study.trials[0].user_attrs == {"seed": 7, "run_id": "abc"}
    assert study.ask().number == 1

"""When a RUNNING trial counts as abandoned (tuner.study.leases)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from tuner.core import attrs
from tuner.study.leases import owner_id_of, stale_reason


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _running(owner: str, supervisor: str | None) -> optuna.trial.FrozenTrial:
    user_attrs = {attrs.OWNER_ATTR: owner, attrs.LEASE_ATTR: time.time() + 60}
    if supervisor is not None:
        user_attrs[attrs.SUPERVISOR_ATTR] = supervisor
    return create_trial(state=TrialState.RUNNING, params={"x": 0.5},
                        distributions={"x": FloatDistribution(0, 1)}, user_attrs=user_attrs)


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

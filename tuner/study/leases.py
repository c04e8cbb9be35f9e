"""Who is training a trial, and whether they still are.

Optuna's own heartbeat works only with SQL storages and only inside
``study.optimize()``; a trial whose process was SIGKILLed stays RUNNING forever on the
journal file. tuner keeps its own lease in two trial user attributes, which every
storage holds:

- ``owner``: ``host:pid`` of the slot process that trains the trial;
- ``supervisor``: ``host:pid`` of the driver that claimed it for that slot; it records
  the trial itself, with the slot's exit status, when the slot dies;
- ``lease_until``: unix seconds; the driver renews it every ``LEASE_SECONDS / 4``
  (:class:`LeaseKeeper`) while the trial trains.

A RUNNING trial is *stale* when its lease has run out, or at once when its owner was a
process on this host that no longer exists and neither does its supervisor (while the
supervisor lives, the trial is its to record: another slot reaping it at the same
moment would race it, and with a vaguer reason). Stale trials are reaped (marked FAIL, their
MLflow run KILLED) by whichever process next claims a trial (:mod:`tuner.study.budget`), so
that a dead process cannot hold a share of the budget.
"""

from __future__ import annotations

import os
import socket
import threading
import time

from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from tuner.core import attrs
from tuner.study.trial_attrs import set_attrs, trial_attr

LEASE_SECONDS = 60.0  # a trial is stale this long after its owner last renewed it


def owner_id() -> str:
    return owner_id_of(os.getpid())


def owner_id_of(pid: int) -> str:
    """How a process ``pid`` of this host appears as a trial's owner."""
    return f"{socket.gethostname()}:{pid}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def stale_reason(trial: FrozenTrial, now: float | None = None) -> str | None:
    """Why a RUNNING trial is no longer being trained, or None if it may still be."""
    now = time.time() if now is None else now
    owner = trial_attr(trial, attrs.OWNER_ATTR)
    lease = trial_attr(trial, attrs.LEASE_ATTR)
    if _died_here(owner) and not _alive_here(trial_attr(trial, attrs.SUPERVISOR_ATTR)):
        return f"its process ({owner}) died"
    if lease is not None and now > float(lease):
        return f"its lease ran out {now - float(lease):.0f} s ago (owner {owner})"
    if lease is None and trial.datetime_start is not None:
        # Asked, but the owner died before it could write its lease.
        age = now - trial.datetime_start.timestamp()
        if age > LEASE_SECONDS:
            return f"it never got a lease in {age:.0f} s"
    return None


def supervisor_died(trial: FrozenTrial) -> bool:
    """Whether the process that records the trial (its driver, or the reaper that
    ended it) was a process of this host that no longer exists: whatever it had yet to
    record of the trial, no one will."""
    return _died_here(trial_attr(trial, attrs.SUPERVISOR_ATTR))


def _here(process: str | None) -> int | None:
    """The pid in a ``host:pid`` of this host, else None."""
    if process is None:
        return None
    host, _, pid = process.rpartition(":")
    return int(pid) if host == socket.gethostname() and pid.isdigit() else None


def _died_here(process: str | None) -> bool:
    pid = _here(process)
    return pid is not None and not _pid_alive(pid)


def _alive_here(process: str | None) -> bool:
    pid = _here(process)
    return pid is not None and _pid_alive(pid)


def take(storage: BaseStorage, trial_id: int, owner_pid: int) -> None:
    """Mark a freshly asked trial as trained by the slot process ``owner_pid`` and
    supervised by this process (its driver), with a fresh lease."""
    set_attrs(storage, trial_id, {attrs.OWNER_ATTR: owner_id_of(owner_pid),
                                       attrs.SUPERVISOR_ATTR: owner_id(),
                                       attrs.LEASE_ATTR: time.time() + LEASE_SECONDS})


class LeaseKeeper:
    """Renews the leases of the trials a driver's slots train, from one thread, every
    ``LEASE_SECONDS / 4``. A trial that was told (or reaped by another process)
    meanwhile drops out; a storage that fails to answer is tried again next time (the
    lease has slack for a few misses)."""

    def __init__(self, storage: BaseStorage):
        self.storage = storage
        self._trials: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tuner-leases", daemon=True)
        self._thread.start()

    def keep(self, trial_id: int) -> None:
        with self._lock:
            self._trials.add(trial_id)

    def release(self, trial_id: int) -> None:
        with self._lock:
            self._trials.discard(trial_id)

    def held(self) -> list[int]:
        """The trials whose leases are kept now."""
        with self._lock:
            return sorted(self._trials)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(LEASE_SECONDS / 4):
            with self._lock:
                trials = list(self._trials)
            for trial_id in trials:
                try:
                    self.storage.set_trial_system_attr(trial_id, attrs.LEASE_ATTR,
                                                     time.time() + LEASE_SECONDS)
                except UpdateFinishedTrialError:
                    self.release(trial_id)  # told (or reaped) meanwhile
                except Exception:
                    continue  # a storage hiccup: try again next interval

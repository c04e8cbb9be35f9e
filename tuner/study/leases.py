"""Who is training a trial, and whether they still are.

Optuna's own heartbeat works only with SQL storages and only inside
``study.optimize()``; a trial whose process was SIGKILLed stays RUNNING forever on the
journal file. tuner keeps its own lease in two trial user attributes, which every
storage holds:

- ``owner``: ``host:pid`` of the slot process that asked for the trial;
- ``supervisor``: ``host:pid`` of the driver that started that slot; it records the
  trial itself, with the slot's exit status, when the slot dies;
- ``lease_until``: unix seconds; the owner renews it every ``LEASE_SECONDS / 4``.

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

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from tuner.core import attrs
from tuner.study.user_attrs import set_user_attrs

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
    owner = trial.user_attrs.get(attrs.OWNER_ATTR)
    lease = trial.user_attrs.get(attrs.LEASE_ATTR)
    if _died_here(owner) and not _alive_here(trial.user_attrs.get(attrs.SUPERVISOR_ATTR)):
        return f"its process ({owner}) died"
    if lease is not None and now > float(lease):
        return f"its lease ran out {now - float(lease):.0f} s ago (owner {owner})"
    if lease is None and trial.datetime_start is not None:
        # Asked, but the owner died before it could write its lease.
        age = now - trial.datetime_start.timestamp()
        if age > LEASE_SECONDS:
            return f"it never got a lease in {age:.0f} s"
    return None


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


def take(storage: BaseStorage, trial_id: int) -> None:
    """Mark a freshly asked trial as ours (a slot's), with a fresh lease."""
    set_user_attrs(storage, trial_id, {attrs.OWNER_ATTR: owner_id(),
                                       attrs.SUPERVISOR_ATTR: owner_id_of(os.getppid()),
                                       attrs.LEASE_ATTR: time.time() + LEASE_SECONDS})


class LeaseKeeper:
    """Renews a trial's lease from a background thread while the trial trains.

    Also watches the process that started this one (the sweep driver): if it dies
    (SIGKILL), ``on_orphaned`` runs once, so that the trial is ended cleanly rather
    than trained on for nobody.
    """

    def __init__(self, storage: BaseStorage, trial_id: int, on_orphaned=None):
        self.storage, self.trial_id = storage, trial_id
        self.on_orphaned = on_orphaned
        self._parent = os.getppid()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tuner-lease", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        interval = LEASE_SECONDS / 4
        last = time.monotonic()
        while not self._stop.wait(1.0):
            if self.on_orphaned is not None and os.getppid() != self._parent:
                self.on_orphaned()
                self.on_orphaned = None
            if time.monotonic() - last < interval:
                continue
            last = time.monotonic()
            try:
                self.storage.set_trial_user_attr(self.trial_id, attrs.LEASE_ATTR,
                                                 time.time() + LEASE_SECONDS)
            except UpdateFinishedTrialError:
                return  # told (or reaped) meanwhile: nothing left to keep
            except Exception:
                # A storage hiccup: try again next interval; the lease has slack for it.
                continue


def running_trial_of(study: optuna.Study | None, pid: int | None) -> int | None:
    """The number of a RUNNING trial that the slot process ``pid`` owns, if any."""
    if study is None or pid is None:
        return None
    owner = owner_id_of(pid)
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if trial.user_attrs.get(attrs.OWNER_ATTR) == owner:
            return trial.number
    return None

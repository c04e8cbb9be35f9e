"""Claiming the next trial so that the study ends with exactly ``n_trials``.

Several processes draw from one budget: slots on this machine, ``tuner worker`` on
others. Counting "COMPLETE + PRUNED + RUNNING < n_trials" and then asking is only exact
if no other process can ask in between, so both happen under one lock per study:

- journal file or SQLite storage: an exclusive ``flock`` on a file beside it (every
  process that can open the file can take the lock);
- PostgreSQL: a session-level advisory lock, which holds across machines.

When the budget is fully allocated but some of it is still RUNNING, a claimant waits
instead of stopping: a running trial may still fail and need replacing. RUNNING trials
whose owner is gone (:mod:`tuner.study.leases`) are reaped under the same lock, so a dead
process never holds budget.
"""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from tuner.core import attrs
from tuner.core.upstream import trial_id_of
from tuner.study import leases
from tuner.study.retries import next_retry
from tuner.study.storage import advisory_key
from tuner.study.trial_attrs import set_attrs
from tuner.study.trials import FINISHED, grid_all_started, grid_exhausted, tell


@dataclass(frozen=True)
class Claim:
    """A trial to train, or why not: ``stop`` ends the claimant, neither means wait."""

    trial: optuna.Trial | None = None
    stop: str | None = None  # "budget" or "grid exhausted"

    @property
    def wait(self) -> bool:
        return self.trial is None and self.stop is None


Reaper = Callable[[FrozenTrial, str], None]  # ends a reaped trial's other records


Lock = Callable[[], AbstractContextManager]  # a fresh hold of the lock per call


def claim_lock(storage: BaseStorage, study_name: str, journal: Path | None = None) -> Lock:
    """The lock under which the budget is counted and a trial asked; ``journal``: the
    file of a journal storage (tuner.study.storage.journal_path)."""
    if isinstance(storage, JournalStorage) and journal is not None:
        return partial(_file_lock, Path(f"{journal}.claim.lock"))
    if isinstance(storage, RDBStorage):
        url = storage.engine.url
        if url.get_backend_name() == "sqlite" and url.database:
            return partial(_file_lock, Path(f"{url.database}.claim.lock"))
        if url.get_backend_name() == "postgresql":
            return partial(_advisory_lock, storage, study_name)
    # Other storages (e.g. MySQL, Redis): no shared lock; concurrent claimants may
    # overshoot n_trials by at most one trial each. README, "Many machines", says so.
    return nullcontext


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _advisory_lock(storage: RDBStorage, study_name: str) -> Iterator[None]:
    from sqlalchemy import text

    key = advisory_key("claim", study_name)
    with storage.engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            connection.commit()


def claim(study: optuna.Study, storage: BaseStorage, n_trials: int,
          lock: Lock, reap: Reaper, owner_pid: int, retry_failed: int = 0,
          grid_points: int | None = None) -> Claim:
    """Ask for a trial for the slot process ``owner_pid`` if the budget has room; see
    the module docstring. The trial is a repeat of a failed one when
    :func:`tuner.study.retries.next_retry` says one is due. ``grid_points``: the size of
    the grid a grid sampler draws from (None: another sampler)."""
    with lock():
        trials, _ = reap_stale(study, storage, reap)
        running = [t for t in trials if t.state == TrialState.RUNNING]
        finished = sum(t.state in FINISHED for t in trials)
        if finished >= n_trials:
            return Claim(stop="budget")
        if grid_exhausted(study):
            return Claim(stop="grid exhausted")
        if finished + len(running) >= n_trials or grid_all_started(trials, grid_points):
            return Claim()
        retry = next_retry(trials, retry_failed)
        if retry is not None:
            # ask() takes the oldest WAITING trial first: this one, or one that an
            # earlier claimant enqueued and did not live to ask for.
            study.enqueue_trial(retry.params, user_attrs=retry.user_attrs)
        trial = study.ask()
        leases.take(storage, trial_id_of(trial), owner_pid)
        return Claim(trial=trial)


def reap_stale(study: optuna.Study, storage: BaseStorage, reap: Reaper,
               everyone_gone: str | None = None) -> tuple[list[FrozenTrial], int]:
    """Mark FAIL ("abandoned: ...") each RUNNING trial whose owner is gone
    (tuner.study.leases), and let ``reap`` end its other records. ``everyone_gone``: the
    caller knows no owner lives (a killed round, whose lock it now holds), and this is
    the reason for trials whose lease has not run out yet. Returns the study's trials
    afterwards and how many were reaped."""
    trials = study.get_trials(deepcopy=False)
    reaped = 0
    for trial in trials:
        if trial.state != TrialState.RUNNING:
            continue
        reason = leases.stale_reason(trial) or everyone_gone
        if reason is not None:
            _reap(study, storage, trial, reason, reap)
            reaped += 1
    return (study.get_trials(deepcopy=False) if reaped else trials), reaped


def _reap(study: optuna.Study, storage: BaseStorage, trial: FrozenTrial, reason: str,
          reap: Reaper) -> None:
    text = f"abandoned: {reason}"
    # The reaper becomes the trial's supervisor: it ends the trial's run from here on,
    # and if it dies before it could, the next command sees that no one will
    # (tuner.launch.conclude.end_orphaned_runs).
    set_attrs(storage, trial_id_of(trial), {attrs.FAIL_REASON_ATTR: text,
                                            attrs.SUPERVISOR_ATTR: leases.owner_id()})
    tell(study, trial.number, state=TrialState.FAIL, skip_if_finished=True)
    reap(trial, text)

"""What every strategy shares (tuner.launch.strategy): how a claim is made.

A driver's slot threads claim one at a time, under the study's claim lock (across
processes and machines: tuner.study.budget.claim_lock), and an outage of the storage is
waited out for the whole claim (tuner.study.outage: the lock reaches the database around
Optuna's calls). A strategy subclasses :class:`Claims` and says what a claim is.
"""

from __future__ import annotations

import threading

import optuna

from tuner.config.plan import SweepPlan
from tuner.core.results import TrialResult
from tuner.core.upstream import storage_of
from tuner.study.budget import Claim, Reaper, claim_lock
from tuner.study.storage import journal_path, open_storage, outage_seconds, patience
from tuner.trial.order import SegmentOrder


class Claims:
    """What every strategy shares: one claim at a time across this driver's threads,
    made under the study's claim lock, an outage waited out for the whole claim
    (tuner.study.outage: the lock reaches the database around Optuna's calls). A
    strategy says what a claim is (:meth:`_claim`)."""

    def __init__(self, plan: SweepPlan, study: optuna.Study, reap: Reaper):
        self.plan, self.study, self.reap = plan, study, reap
        self.storage = storage_of(study)
        self.patience = patience(outage_seconds(plan.cfg.storage))  # this process's
        # The lock is the database's (tuner.study.budget.claim_lock), on the storage as
        # configured: Optuna hands the study an RDB storage wrapped in a cache.
        self.lock = claim_lock(open_storage(plan.cfg.storage), plan.study_name,
                               journal_path(plan.cfg.storage))
        self._here = threading.Lock()  # across this driver's threads, whatever the storage

    def next_trial(self, owner_pid: int) -> Claim:
        with self._here:
            return self.patience.wait_out("claim", self._claim, owner_pid)

    def _claim(self, owner_pid: int) -> Claim:
        raise NotImplementedError

    def segment(self, trial: optuna.Trial) -> SegmentOrder | None:
        return None  # the config's whole fit

    def finished(self, result: TrialResult) -> None:
        pass  # the next claim reads the study

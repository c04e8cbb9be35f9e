"""What every driver shares: ``tuner sweep``, ``tuner worker`` and rank 0 under torchrun.

A driver opens (or joins) the study and its MLflow records, lets its slots claim and
train trials, shows each finished trial, and stops the slots early after
``max_failures`` failed trials. The pieces here are those steps; the commands
(tuner.app.sweep, tuner.app.worker) put them in order.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.app.progress import PlainReporter, Tally, format_values
from tuner.config.plan import SweepPlan
from tuner.core.errors import SweepInterrupted
from tuner.core.results import TrialResult
from tuner.launch.pool import SlotPool
from tuner.launch.protocol import Go
from tuner.study.storage import open_storage
from tuner.study.studies import join_study, wait_for_journal
from tuner.study.trials import FINISHED, best_trial
from tuner.tracking.runs import Tracker


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """SIGTERM is handled like Ctrl-C while the driver runs (the trials are recorded)."""
    def handler(signum, frame):
        raise SweepInterrupted("SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def tally(study: optuna.Study, plan: SweepPlan) -> tuple[Tally, FrozenTrial | None]:
    """Counts for display, and the best trial: one read of the study per trial."""
    trials = study.get_trials(deepcopy=False)
    best = best_trial(study, trials)
    counts = Tally(done=sum(t.state in FINISHED for t in trials), total=plan.cfg.n_trials,
                   pruned=sum(t.state == TrialState.PRUNED for t in trials),
                   failed=sum(t.state == TrialState.FAIL for t in trials),
                   best=format_values(plan.metrics, best.values) if best else "-")
    return counts, best


class TrialWatch:
    """Shows each finished trial and counts it; says when the failures are too many."""

    def __init__(self, plan: SweepPlan, study: optuna.Study, reporter: PlainReporter):
        self.plan, self.study, self.reporter = plan, study, reporter
        self.failures: Counter[str] = Counter()  # reasons of this invocation's failures
        self.trained = 0  # trials this driver's slots finished

    def start(self) -> None:
        counts, _ = tally(self.study, self.plan)
        self.reporter.start(self.plan.study_name, counts)

    def on_finished(self, result: TrialResult) -> bool:
        """Show ``result``; True when the sweep should stop (``max_failures`` reached)."""
        counts, _ = tally(self.study, self.plan)
        self.reporter.trial_done(result, self.plan.metrics, counts)
        self.trained += 1
        if result.state != TrialState.FAIL:
            return False
        self.failures[result.reason or "unknown"] += 1
        return self.too_many_failures

    @property
    def too_many_failures(self) -> bool:
        limit = self.plan.cfg.max_failures
        return bool(limit) and sum(self.failures.values()) >= limit

    def stop_reason(self, reasons: list[str]) -> str:
        """Why the sweep ended, from why each slot stopped and this watch's failures."""
        if self.too_many_failures:
            return "failures"
        for reason in ("timeout", "grid exhausted", "budget"):
            if reason in reasons:
                return reason
        return reasons[0] if reasons else "budget"


def go_signal(plan: SweepPlan, tracker: Tracker) -> Go:
    """What slots need to start claiming: the records to write under, and the deadline
    (``timeout`` seconds from now) after which no trial starts."""
    deadline = None if plan.cfg.timeout is None else time.time() + plan.cfg.timeout
    return Go(tracker.experiment_id, tracker.parent_run_id, deadline)


def join_records(plan: SweepPlan, wait: float) -> tuple[optuna.Study, Tracker]:
    """The study and parent run that a ``tuner sweep`` opened, waiting up to ``wait``
    seconds for them (a worker may start first)."""
    wait = wait_for_journal(plan, wait)
    study = join_study(plan, open_storage(plan.cfg.storage), wait)
    tracker = Tracker(plan.cfg.tracking, plan.study_name)
    tracker.join(study)
    return study, tracker


def run_slots(plan: SweepPlan, pool: SlotPool, study: optuna.Study, tracker: Tracker,
              watch: TrialWatch) -> list[str]:
    """Let the pool's slots claim and train trials; why each slot stopped."""
    watch.start()
    return pool.run(go_signal(plan, tracker), study, tracker, watch.on_finished)

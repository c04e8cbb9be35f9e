"""What a driver command watches while its slots train: each finished trial shown and
counted, the failures that stop it, and SIGTERM taken as Ctrl-C.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.app.progress import PlainReporter, Tally, format_values
from tuner.config.plan import SweepPlan
from tuner.core.errors import SweepInterrupted
from tuner.core.results import TrialResult
from tuner.study.trials import FINISHED, best_trial


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
    return tally_of(study, plan, trials), best_trial(study, trials)


def tally_of(study: optuna.Study, plan: SweepPlan, trials: Sequence[FrozenTrial]) -> Tally:
    """Counts for display over ``trials`` (the study's, or those ended so far)."""
    best = best_trial(study, list(trials))
    return Tally(done=sum(t.state in FINISHED for t in trials), total=plan.cfg.n_trials,
                 pruned=sum(t.state == TrialState.PRUNED for t in trials),
                 failed=sum(t.state == TrialState.FAIL for t in trials),
                 best=format_values(plan.metrics, best.values) if best else "-")


class TrialWatch:
    """Shows each finished trial and counts it; says when the failures are too many."""

    def __init__(self, plan: SweepPlan, study: optuna.Study, reporter: PlainReporter):
        self.plan, self.study, self.reporter = plan, study, reporter
        self.failures: Counter[str] = Counter()  # reasons of this invocation's failures
        self.trained = 0  # trials this driver's slots finished

    def start(self) -> None:
        counts, _ = tally(self.study, self.plan)
        self.reporter.start(self.plan.study_name, counts)

    def on_finished(self, result: TrialResult, counts: Tally | None = None) -> bool:
        """Show ``result`` (with ``counts``, or the study's now); True when the sweep
        should stop (``max_failures`` reached)."""
        counts = counts if counts is not None else tally(self.study, self.plan)[0]
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


def deadline_of(plan: SweepPlan) -> float | None:
    """Unix seconds after which no trial starts (``timeout`` from now); None: no limit."""
    return None if plan.cfg.timeout is None else time.time() + plan.cfg.timeout


def show_outages(plan: SweepPlan, reporter: PlainReporter) -> Callable[[str], None]:
    """The progress says when the study's storage stops answering, and when it is back
    (tuner.study.outage waits it out), for this process and its slots (the driver shows
    their notes with the function returned)."""
    from tuner.study.storage import outage_seconds, patience

    def say(text: str) -> None:
        reporter.print(f"tuner: {text}")

    waiting = patience(outage_seconds(plan.cfg.storage))
    waiting.on_away = waiting.on_back = say
    return say

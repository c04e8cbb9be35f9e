"""The sweep driver: a plan in, a finished (or topped-up) study and its records out.

    preflight                      train one batch; nothing is written before this passes
    open the study and the runs    the storage, the MLflow experiment and parent run
    until the budget is spent      ask a trial -> train it -> tell Optuna -> end its run
    finalize                       champion, leaderboard and report on the parent run

The budget is ``n_trials`` COMPLETE + PRUNED trials in the study, counted afresh before
each trial, so a rerun tops up. The loop also ends at ``timeout`` seconds (no new trial
starts after it), when a grid sampler has run out of points, or after ``max_failures``
failed trials in this invocation.

Interruptions: Ctrl-C or SIGTERM while a trial trains marks that trial FAIL (reason
"interrupted"), its MLflow run KILLED, and the parent run KILLED, then re-raises; the
next identical command resumes the study.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.errors import SweepInterrupted, SweepStopped
from tuner.plan import SweepPlan
from tuner.preflight import preflight
from tuner.progress import PlainReporter, Tally, format_values
from tuner.report import Summary, finalize
from tuner.study import FINISHED, best_trial, grid_exhausted, open_storage, open_study, tell
from tuner.tracking import tags
from tuner.tracking.registry import is_better
from tuner.tracking.runs import Tracker
from tuner.trial import TrialResult, run_trial


@dataclass(frozen=True)
class SweepOutcome:
    study: optuna.Study
    summary: Summary
    stop_reason: str  # "budget", "timeout", "grid exhausted" or "failures"


def run_sweep(plan: SweepPlan, reporter: PlainReporter) -> SweepOutcome:
    preflight(plan)
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    study = open_study(plan, open_storage(plan.cfg.storage))
    tracker = Tracker(plan.cfg.tracking, plan.study_name)
    tracker.open(study, plan.study_params())
    failures: Counter[str] = Counter()
    try:
        with _sigterm_raises():
            stop_reason = _trial_loop(plan, study, tracker, reporter, failures)
    except BaseException:
        tracker.close("KILLED")
        raise
    finally:
        reporter.stop()
    summary = finalize(plan, study, tracker)
    tracker.close("FAILED" if stop_reason == "failures" else "FINISHED")
    if stop_reason == "failures":
        reason, n = failures.most_common(1)[0]
        raise SweepStopped(f"stopped after {sum(failures.values())} failed trials "
                           f"(max_failures={plan.cfg.max_failures}); most common reason "
                           f"({n}x): {reason}")
    return SweepOutcome(study, summary, stop_reason)


@contextmanager
def _sigterm_raises() -> Iterator[None]:
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


def _trial_loop(plan: SweepPlan, study: optuna.Study, tracker: Tracker,
                reporter: PlainReporter, failures: Counter[str]) -> str:
    deadline = None if plan.cfg.timeout is None else time.monotonic() + plan.cfg.timeout
    counts, best = tally(study, plan)
    reporter.start(plan.study_name, counts)
    while True:
        if counts.done >= plan.cfg.n_trials:
            return "budget"
        if deadline is not None and time.monotonic() >= deadline:
            return "timeout"
        if grid_exhausted(study):
            return "grid exhausted"
        result = _one_trial(plan, study, tracker, best)
        counts, best = tally(study, plan)
        reporter.trial_done(result, plan.metrics, counts)
        if result.state == TrialState.FAIL:
            failures[result.reason or "unknown"] += 1
            if plan.cfg.max_failures and sum(failures.values()) >= plan.cfg.max_failures:
                return "failures"


def _one_trial(plan: SweepPlan, study: optuna.Study, tracker: Tracker,
               best: FrozenTrial | None) -> TrialResult:
    def beats_best(value: float) -> bool:
        return best is None or is_better(value, best.values[0], plan.directions[0])

    trial = None
    try:
        trial = study.ask()
        result = run_trial(plan, trial, tracker, beats_best)
        if result.state == TrialState.COMPLETE:
            tell(study, trial, values=result.values)
        else:
            if result.reason:
                trial.set_user_attr(tags.FAIL_REASON_ATTR, result.reason)
            tell(study, trial, state=result.state)
        if result.run_id is not None:
            tracker.end_trial(result.run_id, result.state, reason=result.reason,
                              pruned_at=result.pruned_at)
        return result
    except BaseException as error:  # Ctrl-C, SIGTERM, or Lightning's exit on Ctrl-C
        if trial is not None:
            _record_interruption(study, trial, tracker, f"interrupted ({type(error).__name__})")
        raise


def _record_interruption(study: optuna.Study, trial: optuna.Trial, tracker: Tracker,
                         reason: str) -> None:
    """Leave nothing RUNNING, wherever in the trial the interruption landed."""
    stored = study.get_trials(deepcopy=False)[trial.number]
    state = stored.state
    if state == TrialState.RUNNING:
        trial.set_user_attr(tags.FAIL_REASON_ATTR, reason)
        tell(study, trial, state=TrialState.FAIL)
        state = TrialState.FAIL
    run_id = stored.user_attrs.get(tags.RUN_ID_ATTR)
    if run_id is not None and tracker.client.get_run(run_id).info.status == "RUNNING":
        failed = state == TrialState.FAIL
        tracker.end_trial(run_id, state, reason=reason if failed else None, interrupted=failed)


def describe_best(plan: SweepPlan, summary: Summary) -> list[str]:
    """Human-readable lines about the best trial and the champion."""
    best = summary.best
    if best is None:
        return ["no trial completed"]
    lines = [f"best trial {best.number}: {format_values(plan.metrics, best.values)}"]
    lines += [f"  {k} = {v:.6g}" if isinstance(v, float) else f"  {k} = {v}"
              for k, v in best.params.items()]
    champion = summary.champion
    if champion is not None:
        moved = "promoted to" if champion.promoted else "still"
        lines.append(f"champion: {moved} models:/{champion.name}@champion (version "
                     f"{champion.version}, trial {champion.trial_number})")
    elif summary.champion_note:
        lines.append(f"no champion registered: {summary.champion_note}")
    return lines

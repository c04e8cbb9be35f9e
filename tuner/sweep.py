"""The sweep driver: a plan in, a finished (or topped-up) study and its records out.

    start the slots                 processes that import torch while the driver goes on
    preflight (in slot 0)           train one batch; nothing is written before this passes
    open the study and the runs     the storage, the MLflow experiment and parent run
    slots claim and train trials    each slot: claim -> train -> tell Optuna -> end its run
    finalize                        champion, leaderboard and report on the parent run
                                    (or, with the tracking server down, all of it waits
                                    in the outbox for `tuner sync`: tuner.sync)

The driver never trains and never imports torch: it opens the records, watches the slots
(:mod:`tuner.pool`) and shows progress. The budget is ``n_trials`` COMPLETE + PRUNED
trials in the study, claimed under a lock (:mod:`tuner.budget`), so a rerun tops up and
several slots or machines never overshoot it. The sweep also ends at ``timeout`` seconds
(no new trial starts after it), when a grid sampler has run out of points, or after
``max_failures`` failed trials in this invocation.

Interruptions: Ctrl-C or SIGTERM marks the running trials FAIL (reason "interrupted"),
their MLflow runs KILLED, and the parent run KILLED, then re-raises; the next identical
command resumes the study.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.errors import SweepInterrupted, SweepStopped
from tuner.outcome import TrialResult
from tuner.plan import SweepPlan
from tuner.pool import SlotPool
from tuner.progress import PlainReporter, Tally, format_values
from tuner.report import Summary
from tuner.slot import Go
from tuner.startup import check_services, start_slots
from tuner.study import (
    FINISHED,
    best_trial,
    join_study,
    open_storage,
    open_study,
    wait_for_journal,
)
from tuner.sync import finish_records, finish_worker_records
from tuner.tracking.runs import Tracker
from tuner.warmup import warm_driver_in_background


@dataclass(frozen=True)
class SweepOutcome:
    study: optuna.Study
    summary: Summary
    stop_reason: str  # "budget", "timeout", "grid exhausted" or "failures"


def run_sweep(plan: SweepPlan, reporter: PlainReporter, pool: SlotPool | None = None
              ) -> SweepOutcome:
    """``pool``: the slots, if the caller started them already (tuner.startup); they
    are stopped here whatever happens."""
    pool = pool if pool is not None else start_slots(plan)
    with pool, _sigterm_raises():
        warmup = warm_driver_in_background(plan.cfg.tracking.tracking_uri,
                                           plan.cfg.tracking.report)
        pool.preflight()
        plan.run_dir.mkdir(parents=True, exist_ok=True)
        study = open_study(plan, open_storage(plan.cfg.storage))
        tracker = Tracker(plan.cfg.tracking, plan.study_name)
        tracker.open(study, plan.study_params())
        failures: Counter[str] = Counter()
        try:
            reasons = _run_slots(plan, pool, study, tracker, reporter, failures)
        except BaseException:
            pool.interrupt(study, tracker)
            tracker.close("KILLED")
            raise
        finally:
            reporter.stop()
    stop_reason = _stop_reason(reasons, failures, plan)
    # The report draws its plots with matplotlib, which is not thread-safe: the warm-up
    # thread's own drawing (long done, but for a very short sweep) must be over first.
    warmup.join()
    summary = finish_records(plan, study, tracker,
                             "FAILED" if stop_reason == "failures" else "FINISHED")
    if stop_reason == "failures":
        reason, n = failures.most_common(1)[0]
        waiting = (f"; {summary.pending} MLflow records pending: run `tuner sync` with the "
                   "same arguments when the tracking server is back" if summary.pending else "")
        raise SweepStopped(f"stopped after {sum(failures.values())} failed trials "
                           f"(max_failures={plan.cfg.max_failures}); most common reason "
                           f"({n}x): {reason}{waiting}")
    return SweepOutcome(study, summary, stop_reason)


@dataclass(frozen=True)
class WorkerOutcome:
    study: optuna.Study
    trained: int  # trials this worker's slots finished
    stop_reason: str
    pending: int = 0  # MLflow records still waiting in this machine's outbox


def run_worker(plan: SweepPlan, reporter: PlainReporter, wait: float = 0.0,
               pool: SlotPool | None = None) -> WorkerOutcome | None:
    """Join a study that ``tuner sweep`` started (on this machine or another): same
    config, same budget; this machine's slots claim trials until it is spent. The sweep
    that started the study keeps the parent run and writes the report at its end.

    Under torchrun the processes are the ranks of every trial (tuner.torchrun)."""
    from tuner import torchrun

    if torchrun.launched():
        check_services(plan)
        return torchrun.run(plan, reporter, wait)
    pool = pool if pool is not None else start_slots(plan)
    with pool, _sigterm_raises():
        warm_driver_in_background(plan.cfg.tracking.tracking_uri, report=False)
        pool.preflight()
        wait = wait_for_journal(plan, wait)
        study = join_study(plan, open_storage(plan.cfg.storage), wait)
        tracker = Tracker(plan.cfg.tracking, plan.study_name)
        tracker.join(study)
        failures: Counter[str] = Counter()
        trained = Counter()

        def count(result: TrialResult) -> None:
            trained[result.state.name] += 1

        try:
            reasons = _run_slots(plan, pool, study, tracker, reporter, failures, count)
        except BaseException:
            pool.interrupt(study, tracker)
            raise
        finally:
            reporter.stop()
    pending = finish_worker_records(study, tracker)
    return WorkerOutcome(study, sum(trained.values()), _stop_reason(reasons, failures, plan),
                         pending)


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


def _run_slots(plan: SweepPlan, pool: SlotPool, study: optuna.Study, tracker: Tracker,
               reporter: PlainReporter, failures: Counter[str],
               also: Callable[[TrialResult], None] | None = None) -> list[str]:
    counts, _ = tally(study, plan)
    reporter.start(plan.study_name, counts)
    deadline = None if plan.cfg.timeout is None else time.time() + plan.cfg.timeout

    def on_finished(result: TrialResult) -> bool:
        counts, _ = tally(study, plan)
        reporter.trial_done(result, plan.metrics, counts)
        if also is not None:
            also(result)
        if result.state != TrialState.FAIL:
            return False
        failures[result.reason or "unknown"] += 1
        return bool(plan.cfg.max_failures) and sum(failures.values()) >= plan.cfg.max_failures

    go = Go(tracker.experiment_id, tracker.parent_run_id, deadline)
    return pool.run(go, study, tracker, on_finished)


def _stop_reason(reasons: list[str], failures: Counter[str], plan: SweepPlan) -> str:
    if plan.cfg.max_failures and sum(failures.values()) >= plan.cfg.max_failures:
        return "failures"
    for reason in ("timeout", "grid exhausted", "budget"):
        if reason in reasons:
            return reason
    return reasons[0] if reasons else "budget"


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

"""``tuner sweep``: a plan in, a finished (or topped-up) study and its records out.

    start the slots                 processes forked with torch imported, while the
                                    driver goes on
    preflight (in slot 0)           train one batch; nothing is written before this passes
    open the study and the runs     the storage, the MLflow experiment and parent run
    drive the slots                 per trial: claim -> sample -> run -> order -> the slot
                                    trains -> tell Optuna -> end the run (tuner.launch.driver)
    finish                          the best model exported once; champion, leaderboard
                                    and report on the parent run (or, with the tracking
                                    server down, all of it waits in the outbox for
                                    `tuner sync`: tuner.app.finish)

The driver never trains and never imports torch: it decides what each slot trains,
writes the records and shows progress. The budget is ``n_trials`` COMPLETE +
PRUNED trials in the study, claimed under a lock (:mod:`tuner.study.budget`), so a rerun
tops up and several slots or machines never overshoot it. The sweep also ends at
``timeout`` seconds (no new trial starts after it), when a grid sampler has run out of
points, or after ``max_failures`` failed trials in this invocation.

Interruptions: Ctrl-C or SIGTERM marks the running trials FAIL (reason "interrupted"),
their MLflow runs KILLED, and the parent run KILLED, then re-raises; the next identical
command resumes the study.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import optuna

from tuner.app.champion import describe_champion
from tuner.app.compression import compression_lines
from tuner.app.finish import finish_records
from tuner.app.lineage import schedule_lines
from tuner.app.progress import PlainReporter, format_values
from tuner.app.report import Summary
from tuner.app.warmup import warm_driver_in_background
from tuner.app.watch import TrialWatch, deadline_of, show_outages, sigterm_raises
from tuner.config.plan import SweepPlan
from tuner.core.errors import SweepStopped
from tuner.launch.driver import Driver
from tuner.launch.pool import SlotPool
from tuner.launch.startup import start_slots
from tuner.study.storage import open_storage
from tuner.study.studies import open_study
from tuner.tracking.runs import Tracker
from tuner.trial.weights import waiting_weights


@dataclass(frozen=True)
class SweepOutcome:
    study: optuna.Study
    summary: Summary
    stop_reason: str  # "budget", "timeout", "grid exhausted" or "failures"
    trained: int = 0  # trials this command ran (0: the study had its budget already)


def run_sweep(plan: SweepPlan, reporter: PlainReporter, pool: SlotPool | None = None,
              prepare: Callable[[optuna.Study, Tracker], None] | None = None
              ) -> SweepOutcome:
    """Run (or resume) the plan's study. ``pool``: the slots, if the caller started them
    already (tuner.launch.startup); they are stopped here whatever happens. ``prepare``:
    called with the study and its records once both are open, before any trial starts
    (a scheduled round enqueues its warm start and tags its parent run there).

    Raises SweepStopped after ``max_failures`` failed trials (the records are finished
    first), ConfigError when the preflight or the study refuses the config (nothing
    written), and KeyboardInterrupt / SweepInterrupted after recording the running
    trials as interrupted."""
    pool = pool if pool is not None else start_slots(plan)
    try:
        return _sweep(plan, reporter, pool, prepare)
    except BaseException as error:
        # For the interruption's message (tuner.cli): the trials it stopped while they
        # trained; none when it came before the driver started any.
        if not hasattr(error, "trials_cut_short"):
            error.trials_cut_short = []
        raise


def _sweep(plan: SweepPlan, reporter: PlainReporter, pool: SlotPool,
           prepare: Callable[[optuna.Study, Tracker], None] | None) -> SweepOutcome:
    with pool, sigterm_raises():
        warmup = warm_driver_in_background(plan.cfg.tracking.tracking_uri,
                                           plan.cfg.tracking.report)
        pool.preflight()
        for note in plan.notes:
            reporter.print(note)
        say = show_outages(plan, reporter)
        plan.run_dir.mkdir(parents=True, exist_ok=True)
        study = open_study(plan, open_storage(plan.cfg.storage))
        tracker = Tracker(plan.cfg.tracking, plan.study_name)
        tracker.open(study, plan.study_params())
        watch = TrialWatch(plan, study, reporter)
        driver = None
        try:
            if prepare is not None:
                prepare(study, tracker)
            driver = Driver(plan, study, tracker, watch.on_finished, deadline_of(plan), say=say)
            watch.start()
            try:
                reasons = driver.run(pool.slots)
            finally:
                driver.close()  # every record written before the end reads them
            if plan.cfg.tracking.log_models and waiting_weights(study) is not None:
                reporter.phase("exporting the best model")
            pool.finish(export=plan.cfg.tracking.log_models)
        except BaseException as error:
            reporter.stop()
            pool.interrupt()
            tracker.close("KILLED")
            error.trials_cut_short = list(driver.cut_short) if driver is not None else []
            raise
    stop_reason = watch.stop_reason(reasons)
    try:
        # The report silences warnings with warnings.catch_warnings, which is not
        # thread-safe: the warm-up thread's own drawing (long done, but for a very short
        # sweep) must be over first.
        warmup.join()
        summary = finish_records(plan, study, tracker,
                                 "FAILED" if stop_reason == "failures" else "FINISHED",
                                 reporter.phase)
    finally:
        reporter.stop()
    if stop_reason == "failures":
        reason, n = watch.failures.most_common(1)[0]
        waiting = (f"; {summary.pending} MLflow records pending: run `tuner sync` with the "
                   "same arguments when the tracking server is back" if summary.pending else "")
        raise SweepStopped(f"stopped after {sum(watch.failures.values())} failed trials "
                           f"(max_failures={plan.cfg.max_failures}); most common reason "
                           f"({n}x): {reason}{waiting}")
    return SweepOutcome(study, summary, stop_reason, watch.trained)


def describe_best(plan: SweepPlan, summary: Summary) -> list[str]:
    """Human-readable lines about the best trial and the champion."""
    best = summary.best
    if best is None:
        return ["no trial completed"]
    lines = [f"best trial {best.number}: {format_values(plan.metrics, best.values)}"]
    lines += [f"  {k} = {v:.6g}" if isinstance(v, float) else f"  {k} = {v}"
              for k, v in best.params.items()]
    lines += compression_lines(best, plan.metrics)
    lines += schedule_lines(summary.schedule)
    champion = summary.champion
    if champion is not None:
        lines.append(describe_champion(champion))
    elif summary.champion_note:
        lines.append(f"no champion registered: {summary.champion_note}")
    return lines

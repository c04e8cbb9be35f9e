"""``tuner worker``: join a study that ``tuner sweep`` started, on this machine or another.

Same config, same budget: this machine's driver hands its slots trials until the
study's budget is spent. The sweep that started the study keeps the parent run and
writes the report at its end; a worker writes only its own trials' records.

Under torchrun (or srun) the processes of every node are the ranks of each trial: there
are no slot processes, and global rank 0 runs the driver and one slot in-process
(tuner.launch.torchrun, tuner.launch.in_process).
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna

from tuner.app.champion import crown_after_export
from tuner.app.finish import finish_worker_records
from tuner.app.progress import PlainReporter
from tuner.app.warmup import warm_driver_in_background
from tuner.app.watch import TrialWatch, deadline_of, show_outages, sigterm_raises
from tuner.config.machine import SlotSpec, cpu_cores, launched_by_torchrun, torchrun_layout
from tuner.config.plan import SweepPlan
from tuner.launch import torchrun
from tuner.launch.driver import Driver
from tuner.launch.pool import SlotPool
from tuner.launch.startup import check_services, start_slots
from tuner.study.storage import open_storage
from tuner.study.studies import join_study, wait_for_journal
from tuner.tracking.runs import Tracker


@dataclass(frozen=True)
class WorkerOutcome:
    study: optuna.Study
    trained: int  # trials this worker's slots finished
    stop_reason: str
    pending: int = 0  # MLflow records still waiting in this machine's outbox
    exported: str | None = None  # the study's best model, if this machine exported it


def join_records(plan: SweepPlan, wait: float) -> tuple[optuna.Study, Tracker]:
    """The study and parent run that a ``tuner sweep`` opened, waiting up to ``wait``
    seconds for them (a worker may start first)."""
    wait = wait_for_journal(plan, wait)
    study = join_study(plan, open_storage(plan.cfg.storage), wait)
    tracker = Tracker(plan.cfg.tracking, plan.study_name)
    tracker.join(study)
    return study, tracker


def run_worker(plan: SweepPlan, reporter: PlainReporter, wait: float = 0.0,
               pool: SlotPool | None = None) -> WorkerOutcome | None:
    """Train trials of the plan's study until its budget is spent; ``wait``: seconds to
    wait for the sweep to create the study. Returns None on torchrun ranks other than 0
    (rank 0 reports for them)."""
    if launched_by_torchrun():
        check_services(plan)
        return torchrun.run(plan, lambda: _lead_ranks(plan, reporter, wait))
    pool = pool if pool is not None else start_slots(plan)
    with pool, sigterm_raises():
        warm_driver_in_background(plan.cfg.tracking.tracking_uri, report=False)
        pool.preflight()
        for note in plan.notes:
            reporter.print(note)
        say = show_outages(plan, reporter)
        study, tracker = join_records(plan, wait)
        watch = TrialWatch(plan, study, reporter)
        try:
            driver = Driver(plan, study, tracker, watch.on_finished, deadline_of(plan), say=say)
            watch.start()
            try:
                reasons = driver.run(pool.slots)
            finally:
                driver.close()
            exported = pool.finish(export=plan.cfg.tracking.log_models)
        except BaseException:
            pool.interrupt()
            raise
        finally:
            reporter.stop()
    exported = crown_after_export(plan, study, tracker, exported)
    pending = finish_worker_records(study, tracker)
    return WorkerOutcome(study, watch.trained, watch.stop_reason(reasons), pending, exported)


def _lead_ranks(plan: SweepPlan, reporter: PlainReporter, wait: float) -> WorkerOutcome:
    """Rank 0 under torchrun: the driver and its one slot in this process; each trial
    runs on every rank (tuner.launch.ddp hands it to tuner.launch.torchrun.lead)."""
    from tuner.launch.in_process import InProcessSlot
    from tuner.trial.model import export_best

    study, tracker = join_records(plan, wait)
    watch = TrialWatch(plan, study, reporter)
    _, _, local = torchrun_layout()
    slot = InProcessSlot(plan, SlotSpec(0, None, max(1, cpu_cores() // local)), study)
    driver = Driver(plan, study, tracker, watch.on_finished, deadline_of(plan))
    watch.start()
    try:
        try:
            [reason] = driver.run([slot], in_this_thread=True)
        finally:
            driver.close()
        exported = export_best(study, tracker) if plan.cfg.tracking.log_models else None
    finally:
        reporter.stop()
    exported = crown_after_export(plan, study, tracker, exported)
    return WorkerOutcome(study, watch.trained, reason, exported=exported)

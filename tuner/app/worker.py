"""``tuner worker``: join a study that ``tuner sweep`` started, on this machine or another.

Same config, same budget: this machine's slots claim trials until the study's budget is
spent. The sweep that started the study keeps the parent run and writes the report at
its end; a worker writes only its own trials' records.

Under torchrun (or srun) the processes of every node are the ranks of each trial: there
are no slots, and global rank 0 runs the slot loop in-process (tuner.launch.torchrun).
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna

from tuner.app.driver import TrialWatch, go_signal, join_records, run_slots, sigterm_raises
from tuner.app.finish import finish_worker_records
from tuner.app.progress import PlainReporter
from tuner.app.report import choose_champion, describe_champion
from tuner.app.warmup import warm_driver_in_background
from tuner.config.machine import SlotSpec, cpu_cores, launched_by_torchrun, torchrun_layout
from tuner.config.plan import SweepPlan
from tuner.launch import torchrun
from tuner.launch.pool import SlotPool
from tuner.launch.protocol import CONTINUE, Finished
from tuner.launch.startup import check_services, start_slots
from tuner.study.trials import best_trial
from tuner.tracking.runs import Tracker


@dataclass(frozen=True)
class WorkerOutcome:
    study: optuna.Study
    trained: int  # trials this worker's slots finished
    stop_reason: str
    pending: int = 0  # MLflow records still waiting in this machine's outbox
    exported: str | None = None  # the study's best model, if this machine exported it


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
        study, tracker = join_records(plan, wait)
        watch = TrialWatch(plan, study, reporter)
        try:
            reasons = run_slots(plan, pool, study, tracker, watch)
            exported = pool.finish(export=plan.cfg.tracking.log_models)
        except BaseException:
            pool.interrupt(study, tracker)
            raise
        finally:
            reporter.stop()
    exported = _champion_after_export(plan, study, tracker, exported)
    pending = finish_worker_records(study, tracker)
    return WorkerOutcome(study, watch.trained, watch.stop_reason(reasons), pending, exported)


def _champion_after_export(plan: SweepPlan, study: optuna.Study, tracker: Tracker,
                           exported: str | None) -> str | None:
    """The best trial's weights were kept here, so only this machine could export its
    model: the sweep that started the study may have ended without it, so the champion
    moves here (only if the model beats it, as at a sweep's end)."""
    if exported is None:
        return None
    champion, _ = choose_champion(plan, best_trial(study), tracker, study.user_attrs)
    if champion is not None and champion.promoted:
        exported += f"; {describe_champion(champion)}"
    return exported


def _lead_ranks(plan: SweepPlan, reporter: PlainReporter, wait: float) -> WorkerOutcome:
    """Rank 0 under torchrun: the slot loop in this process; its trials run on every rank
    (tuner.launch.ddp hands each one to tuner.launch.torchrun.lead)."""
    from tuner.launch.slot import Slot

    study, tracker = join_records(plan, wait)
    watch = TrialWatch(plan, study, reporter)
    _, _, local = torchrun_layout()
    spec = SlotSpec(0, None, max(1, cpu_cores() // local))
    slot = Slot(plan, spec, _InProcess(watch), go_signal(plan, tracker), records=tracker)
    watch.start()
    try:
        reason = slot.run()
        exported = slot.export_best() if plan.cfg.tracking.log_models else None
    finally:
        reporter.stop()
    exported = _champion_after_export(plan, study, tracker, exported)
    return WorkerOutcome(study, watch.trained, reason, exported=exported)


class _InProcess:
    """The pipe of a slot that runs in the driver's own process: what the slot sends is
    shown at once, and the answer to each finished trial is always "continue"."""

    def __init__(self, watch: TrialWatch):
        self.watch = watch

    def send(self, message: object) -> None:
        if isinstance(message, Finished):
            self.watch.on_finished(message.result)

    def poll(self) -> bool:
        return False

    def recv(self) -> str:
        return CONTINUE

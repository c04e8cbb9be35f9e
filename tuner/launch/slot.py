"""A slot: one process that trains trials one after another until the budget is spent.

The driver (:mod:`tuner.launch.pool`) starts each slot as a fresh process and talks to
it over a pipe (:mod:`tuner.launch.protocol`). The slot imports torch and Lightning once
and keeps them: a trial costs its training, not a Python start-up. It owns the trials it
trains: it claims each one (:mod:`tuner.study.budget`) and hands it to the trial's
lifecycle (:mod:`tuner.trial.lifecycle`: lease, train, tell Optuna, end its MLflow run).
Its MLflow writes go to the driver, which makes them (:mod:`tuner.launch.records`): a
slot imports MLflow only to export the best model once the sweep is over, or if the
driver dies. If the slot dies (segfault, OOM kill, SIGKILL), the driver ends the slot's
trial and starts another slot.

Ctrl-C or SIGTERM while a trial trains marks it FAIL ("interrupted") and its run KILLED,
then the slot exits with status 130; the trial's checkpoint, if it saved one, stays for
its repeat to resume from (:mod:`tuner.trial.resume`).
"""

from __future__ import annotations

import os
import signal
import time
import traceback
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

import optuna

from tuner.config.machine import SlotSpec
from tuner.config.plan import SweepPlan
from tuner.config.samplers import build_pruner, build_sampler
from tuner.core.errors import ConfigError, SweepInterrupted
from tuner.core.exits import INTERRUPTED_EXIT, exit_quickly
from tuner.launch.protocol import (
    DONE,
    EXPORT,
    PREFLIGHT,
    STOP,
    Channel,
    Exported,
    Finished,
    Go,
    PreflightDone,
    SlotError,
    Started,
    Stopped,
)
from tuner.launch.records import DriverLine, PipeRecords
from tuner.trial.records import TrialRecords

if TYPE_CHECKING:
    from tuner.tracking.runs import Tracker

WAIT_POLL = 0.5  # seconds between budget checks while others' trials may still fail


def slot_main(plan: SweepPlan, spec: SlotSpec, conn: Connection) -> None:
    """Entry point of a slot process (multiprocessing ``spawn``)."""
    _pin(spec)  # before torch is imported: CUDA and OpenMP read these once
    signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        _serve(plan, spec, conn)
    except (KeyboardInterrupt, SweepInterrupted, SystemExit):
        # A second signal must not cut the clean-up short; the driver waits for us.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os._exit(INTERRUPTED_EXIT)
    except Exception:
        try:
            conn.send(SlotError(spec.index, traceback.format_exc()))
        finally:
            os._exit(1)
    conn.close()
    exit_quickly(0)  # the driver may be waiting for this process to end


def _pin(spec: SlotSpec) -> None:
    if spec.gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(spec.gpus)
    else:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # a CPU slot never touches a GPU
    os.environ["OMP_NUM_THREADS"] = str(spec.threads)
    os.environ["MKL_NUM_THREADS"] = str(spec.threads)


def _raise_interrupted(signum, frame):
    raise SweepInterrupted(signal.Signals(signum).name)


def _serve(plan: SweepPlan, spec: SlotSpec, conn: Channel) -> None:
    from tuner.trial.build import prepare_process

    prepare_process(spec.threads)
    while True:
        message = conn.recv()
        if message == PREFLIGHT:
            from tuner.trial.preflight import preflight

            try:
                preflight(plan)
            except ConfigError as error:
                conn.send(PreflightDone(error))
                continue
            conn.send(PreflightDone(None))
        elif isinstance(message, Go):
            slot = Slot(plan, spec, conn, message)
            conn.send(Stopped(spec.index, slot.run()))
            slot.warm_export_while_idle()  # other slots may still train their last trials
            if slot.last_word() == EXPORT:
                conn.send(Exported(spec.index, slot.export_best()))
            return
        elif message == STOP:
            return



class Slot:
    """The claim loop: claim a trial, train it, report it, until told or out of budget."""

    def __init__(self, plan: SweepPlan, spec: SlotSpec, conn: Channel, go: Go,
                 records: TrialRecords | None = None):
        """``records``: where the trials' MLflow writes go; by default to the driver over
        ``conn`` (tuner.launch.records). A slot in the driver's own process (torchrun's
        rank 0) passes the driver's tracker."""
        from tuner.study.budget import claim_lock
        from tuner.study.storage import open_storage

        self.plan, self.spec, self.go = plan, spec, go
        self.conn = DriverLine(conn)
        self.storage = open_storage(plan.cfg.storage)
        study_id = self.storage.get_study_id_from_name(plan.study_name)
        n = len(self.storage.get_all_trials(study_id, deepcopy=False))
        self.study = optuna.load_study(
            study_name=plan.study_name, storage=self.storage,
            sampler=build_sampler(plan.cfg, plan.space, trials_so_far=n, slot=spec.index),
            pruner=build_pruner(plan.cfg))
        self.pipe = None if records is not None else PipeRecords(
            self.conn, plan.cfg.tracking, plan.study_name, go.experiment_id, go.parent_run_id)
        self.records: TrialRecords = records if records is not None else self.pipe
        self.lock = claim_lock(self.storage, plan.study_name)

    def run(self) -> str:
        """Why the slot stopped: "stopped", "timeout", "budget" or "grid exhausted"."""
        from tuner.launch.ddp import fit_in_ranks
        from tuner.study.budget import claim
        from tuner.trial.lifecycle import train_claimed

        while True:
            if self._stop_requested():
                return "stopped"
            if self.go.deadline is not None and time.time() >= self.go.deadline:
                return "timeout"
            claimed = claim(self.study, self.storage, self.plan.cfg.n_trials, self.lock,
                            self.records.end_abandoned, self.plan.cfg.retry_failed)
            if claimed.stop is not None:
                return claimed.stop
            if claimed.wait:
                time.sleep(WAIT_POLL)
                continue
            self.conn.send(Started(self.spec.index, claimed.trial.number))
            result = train_claimed(self.plan, self.study, self.storage, claimed.trial,
                                   self.records, fit_in_ranks, _interrupt_self)
            if self.pipe is not None:  # the driver's next word must be its reply to this
                self.pipe.drop_unclaimed_answer()
            self.conn.send(Finished(self.spec.index, result))
            try:
                answer = self.conn.recv()
            except EOFError:
                self._driver_gone()
                return "stopped"
            if answer == STOP or self.conn.stop:
                return "stopped"

    def warm_export_while_idle(self) -> None:
        """Once this slot has stopped, while others may still train: pay the first
        export's seconds of set-up (MLflow's imports and store, ``torch.export``'s:
        tuner.tracking.preload), if models are on and the driver has not spoken yet."""
        if not self.plan.cfg.tracking.log_models or self.conn.poll():
            return
        from tuner.core.quiet import quiet_lightning
        from tuner.tracking import preload

        self._exporting_tracker()  # MLflow's imports: the export needs them anyway
        if not self.conn.poll():  # asked to export meanwhile: the export pays the rest
            preload.warm_model_export()
            quiet_lightning()  # MLflow's pytorch flavour configures Lightning's logging

    def last_word(self) -> object:
        """What the driver says after the slot stopped (EXPORT or DONE); DONE if it is
        gone (then this slot writes what it sent that the driver may not have)."""
        try:
            while (message := self.conn.recv()) not in (EXPORT, DONE):
                pass  # a STOP the driver sent before it saw that this slot had stopped
        except EOFError:
            self._driver_gone()
            return DONE
        return message

    def export_best(self) -> str | None:
        """Export the study's best model from the weights its trial kept, if this machine
        keeps them (tuner.trial.model); what happened, in a line."""
        from tuner.trial.model import export_best

        return export_best(self.study, self._exporting_tracker())

    def _exporting_tracker(self) -> Tracker:
        if self.pipe is None:
            return self.records  # the driver's own tracker (a slot in its process)
        return self.pipe.tracker()

    def _driver_gone(self) -> None:
        if self.pipe is not None:
            self.pipe.driver_gone()

    def _stop_requested(self) -> bool:
        if self.conn.stop:
            return True
        try:
            while self.conn.poll():
                if self.conn.recv() == STOP:
                    return True
        except EOFError:  # the driver is gone
            self._driver_gone()
            return True
        return False


def _interrupt_self() -> None:
    """The driver was killed: end the running trial as interrupted (via SIGTERM)."""
    os.kill(os.getpid(), signal.SIGTERM)

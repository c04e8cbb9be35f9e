"""A slot: one process that trains the trials its driver orders, one after another.

The driver (tuner.launch.pool) starts each slot and talks to it over a pipe
(tuner.launch.protocol). The slot imports torch and Lightning once and keeps them: a
trial costs its training, not a Python start-up. Its side of a trial is

    order -> fit (tuner.trial.train) -> outcome

and nothing else: it claims nothing, samples nothing, and writes nothing to MLflow; its
metric batches go one way to the driver, which writes them, tells Optuna how the trial
ended and ends its run. A slot imports MLflow only to export the best model once the
sweep is over, or if its driver dies while it trains (tuner.launch.orphan).

Ctrl-C or SIGTERM while a trial trains: the slot sends what the trial logged and exits
with status 130; its driver marks the trial FAIL ("interrupted") and its run KILLED, and
the trial's checkpoint, if it saved one, stays for its repeat to resume from
(tuner.trial.resume).
"""

from __future__ import annotations

import os
import signal
import traceback
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

import optuna

from tuner.config.machine import SlotSpec
from tuner.config.plan import SweepPlan
from tuner.core.errors import ConfigError, SweepInterrupted
from tuner.core.exits import INTERRUPTED_EXIT, exit_quickly
from tuner.launch.driver_line import DriverLine, DriverWatch
from tuner.launch.protocol import (
    DONE,
    EXPORT,
    IDLE,
    PREFLIGHT,
    Exported,
    Finished,
    Note,
    Order,
    PreflightDone,
    SlotError,
)

if TYPE_CHECKING:
    from tuner.tracking.runs import Tracker


def slot_main(plan: SweepPlan, spec: SlotSpec, conn: Connection, env: dict[str, str],
              driver_pid: int) -> None:
    """Entry point of a slot process. ``env``: the driver's environment (a slot forked
    from a server started earlier inherits that server's, not the driver's)."""
    os.environ.clear()
    os.environ.update(env)
    _pin(spec)  # before CUDA is initialised or OpenMP starts its threads: both read these once
    signal.signal(signal.SIGTERM, _raise_interrupted)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        Slot(plan, spec, DriverLine(conn), DriverWatch(driver_pid)).serve()
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


class Slot:
    def __init__(self, plan: SweepPlan, spec: SlotSpec, line: DriverLine, watch: DriverWatch):
        self.plan, self.spec, self.line, self.watch = plan, spec, line, watch
        self._study: optuna.Study | None = None
        self._tracker: Tracker | None = None
        self._records: tuple[str | None, str | None] = (None, None)  # experiment, parent run

    def serve(self) -> None:
        """Do what the driver says until it says it is done (or is gone)."""
        from tuner.trial.build import prepare_process

        prepare_process(self.spec.threads)
        while (message := self.line.recv()) is not None:
            if message == PREFLIGHT:
                self.line.send(PreflightDone(self._preflight()))
            elif isinstance(message, Order):
                self._records = (message.experiment_id, message.parent_run_id)
                self.line.send(Finished(self.spec.index, self.train(message)))
            elif message == IDLE:
                self.warm_export()  # other slots may still train their last trials
            elif message == EXPORT:
                self.line.send(Exported(self.spec.index, self.export_best()))
                return
            elif message == DONE:
                return

    def _preflight(self) -> ConfigError | None:
        from tuner.trial.preflight import preflight

        try:
            preflight(self.plan)
        except ConfigError as error:
            return error
        return None

    def train(self, order: Order):
        """Train ``order``; if the driver dies meanwhile, end the trial as it would have."""
        from tuner.core.results import TrialResult, reason_of
        from tuner.launch.ddp import fit_in_ranks
        from tuner.trial.train import train

        try:
            with self.watch.training():
                study = self.study()
                return train(self.plan, order, study, self.line.send_metrics, fit_in_ranks)
        except (KeyboardInterrupt, SweepInterrupted, SystemExit):
            if self.watch.driver_gone:
                from tuner.launch.orphan import end_orphaned

                end_orphaned(self.plan, order, self.study(), self.line.unwritten())
            raise
        except Exception as error:  # outside the trial's own code: the storage, say
            from optuna.trial import TrialState

            return TrialResult(order.number, TrialState.FAIL, reason=reason_of(error),
                               run_id=order.run_id, error_text=traceback.format_exc())

    def study(self) -> optuna.Study:
        """The study, opened once, with its pruner: a trial reports each epoch to it and
        asks the pruner, against the storage."""
        if self._study is None:
            from tuner.config.samplers import build_pruner
            from tuner.study.outage import patience_of
            from tuner.study.storage import open_storage

            storage = open_storage(self.plan.cfg.storage)
            waiting = patience_of(storage)
            if waiting is not None:  # the driver shows when the storage is away and back
                waiting.on_away = waiting.on_back = lambda text: self.line.send(Note(text))
            self._study = optuna.load_study(
                study_name=self.plan.study_name, storage=storage,
                sampler=optuna.samplers.RandomSampler(), pruner=build_pruner(self.plan.cfg))
        return self._study

    # -- the end of the sweep --------------------------------------------------------------

    def warm_export(self) -> None:
        """While others train: pay the first export's seconds of set-up (MLflow's imports
        and store, ``torch.export``'s: tuner.tracking.preload), if models are on and the
        driver has not spoken yet."""
        if not self.plan.cfg.tracking.log_models or self.line.poll():
            return
        from tuner.core.quiet import quiet_lightning
        from tuner.tracking import preload

        try:
            self._exporting_tracker()  # MLflow's imports: the export needs them anyway
            if not self.line.poll():  # asked to export meanwhile: the export pays the rest
                preload.warm_model_export()
                quiet_lightning()  # MLflow's pytorch flavour configures Lightning's logging
        except Exception:  # only a warm-up: the export itself says what is wrong
            pass

    def export_best(self) -> str | None:
        """Export the study's best model from the weights its trial kept, if this machine
        keeps them (tuner.trial.model); what happened, in a line."""
        from tuner.trial.model import export_best

        return export_best(self.study(), self._exporting_tracker())

    def _exporting_tracker(self) -> Tracker:
        """A tracker of this slot's own under the study's parent run: the one its orders
        named (no request: a tracking server that is down still gets the model queued in
        the outbox), else the one the study names."""
        if self._tracker is None:
            from tuner.tracking.runs import Tracker

            tracker = Tracker(self.plan.cfg.tracking, self.plan.study_name)
            experiment_id, parent_run_id = self._records
            if experiment_id is not None and parent_run_id is not None:
                tracker.attach(experiment_id, parent_run_id)
            else:
                tracker.join(self.study())
            self._tracker = tracker
        return self._tracker

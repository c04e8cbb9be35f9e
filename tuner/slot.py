"""A slot: one process that trains trials one after another until the budget is spent.

The driver (:mod:`tuner.pool`) starts each slot as a fresh process and talks to it over
a pipe. The slot imports torch and Lightning once and keeps them: a trial costs its
training, not a Python start-up. It owns the trials it trains: it claims each one
(:mod:`tuner.budget`), keeps its lease, trains it, tells Optuna and ends its MLflow run.
The driver only watches; if the slot dies (segfault, OOM kill, SIGKILL), the driver
ends the slot's trial and starts another slot.

Messages, driver to slot: ``PREFLIGHT``, then :class:`Go` (or ``STOP``), then
``CONTINUE`` or ``STOP`` in answer to each :class:`Finished` (so that ``max_failures``
stops the sweep before another trial starts), or ``STOP`` at any time (finish the
current trial, then exit). Slot to driver: :class:`Ready`, :class:`PreflightDone`, then
:class:`Started` / :class:`Finished` per trial, and :class:`Stopped` or
:class:`SlotError` last.

Ctrl-C or SIGTERM while a trial trains marks it FAIL ("interrupted") and its run KILLED,
then the slot exits with status 130; the trial's checkpoint, if it saved one, stays for
its repeat to resume from (:mod:`tuner.resume`).
"""

from __future__ import annotations

import os
import signal
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from tuner.devices import SlotSpec
from tuner.errors import ConfigError, SweepInterrupted
from tuner.exits import exit_quickly
from tuner.outcome import TrialResult
from tuner.plan import SweepPlan

PREFLIGHT = "preflight"
STOP = "stop"
CONTINUE = "continue"
WAIT_POLL = 0.5  # seconds between budget checks while others' trials may still fail
INTERRUPTED_EXIT = 130


@dataclass(frozen=True)
class Go:
    experiment_id: str
    parent_run_id: str
    deadline: float | None  # unix seconds after which no trial starts; None: no limit


@dataclass(frozen=True)
class Ready:
    slot: int


@dataclass(frozen=True)
class PreflightDone:
    error: ConfigError | None


@dataclass(frozen=True)
class Started:
    slot: int
    number: int


@dataclass(frozen=True)
class Finished:
    slot: int
    result: TrialResult


@dataclass(frozen=True)
class Stopped:
    slot: int
    reason: str  # "budget", "timeout", "grid exhausted" or "stopped"


@dataclass(frozen=True)
class SlotError:
    slot: int
    text: str  # traceback of an error outside any trial (e.g. the storage went away)


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


def _serve(plan: SweepPlan, spec: SlotSpec, conn: Connection) -> None:
    import torch

    from tuner.study import quiet_optuna
    from tuner.training import look_up_callback_plugins_once, quiet_lightning

    torch.set_num_threads(spec.threads)
    if plan.cfg.tracking.log_models:
        # Imported now, not at the first model: it imports the standalone
        # pytorch_lightning package and configures logging, which quiet_lightning undoes.
        import mlflow.pytorch  # noqa: F401
    quiet_lightning()
    look_up_callback_plugins_once()
    quiet_optuna()
    conn.send(Ready(spec.index))
    while True:
        message = conn.recv()
        if message == PREFLIGHT:
            from tuner.preflight import preflight

            try:
                preflight(plan)
            except ConfigError as error:
                conn.send(PreflightDone(error))
                continue
            conn.send(PreflightDone(None))
            # The driver now creates the study and the MLflow store: meanwhile, pay what
            # the first trial would (tuner.warmup).
            from tuner.warmup import warm_slot

            warm_slot(plan.cfg.tracking.tracking_uri, plan.cfg.tracking.log_models)
        elif isinstance(message, Go):
            reason = Slot(plan, spec, conn, message).run()
            conn.send(Stopped(spec.index, reason))
            return
        elif message == STOP:
            return


class Slot:
    def __init__(self, plan: SweepPlan, spec: SlotSpec, conn: Connection, go: Go):
        from tuner.budget import claim_lock
        from tuner.study import open_storage
        from tuner.tracking.runs import Tracker

        self.plan, self.spec, self.conn, self.go = plan, spec, conn, go
        self.storage = open_storage(plan.cfg.storage)
        study_id = self.storage.get_study_id_from_name(plan.study_name)
        n = len(self.storage.get_all_trials(study_id, deepcopy=False))
        self.study = optuna.load_study(
            study_name=plan.study_name, storage=self.storage,
            sampler=plan.build_sampler(trials_so_far=n, slot=spec.index),
            pruner=plan.build_pruner())
        self.tracker = Tracker(plan.cfg.tracking, plan.study_name)
        self.tracker.attach(go.experiment_id, go.parent_run_id)
        self.lock = claim_lock(self.storage, plan.study_name)

    def run(self) -> str:
        from tuner.budget import claim
        from tuner.tracking.replay import catch_up

        while True:
            if self._stop_requested():
                return "stopped"
            if self.go.deadline is not None and time.time() >= self.go.deadline:
                return "timeout"
            catch_up(self.tracker.client, self.study)  # MLflow records that had to wait
            claimed = claim(self.study, self.storage, self.plan.cfg.n_trials, self.lock,
                            self.tracker.end_abandoned, self.plan.cfg.retry_failed)
            if claimed.stop is not None:
                return claimed.stop
            if claimed.wait:
                time.sleep(WAIT_POLL)
                continue
            self.conn.send(Started(self.spec.index, claimed.trial.number))
            result = self._train(claimed.trial)
            self.conn.send(Finished(self.spec.index, result))
            if self.conn.recv() == STOP:
                return "stopped"

    def _stop_requested(self) -> bool:
        try:
            while self.conn.poll():
                if self.conn.recv() == STOP:
                    return True
        except EOFError:  # the driver is gone
            return True
        return False

    def _train(self, trial: optuna.Trial) -> TrialResult:
        from tuner.leases import LeaseKeeper
        from tuner.resume import discard
        from tuner.study import best_trial
        from tuner.tracking.registry import is_better
        from tuner.trial import run_trial

        plan, tracker = self.plan, self.tracker
        best = best_trial(self.study)

        def beats_best(value: float) -> bool:
            return best is None or is_better(value, best.values[0], plan.directions[0])

        def orphaned() -> None:  # the driver was killed: end the trial as interrupted
            os.kill(os.getpid(), signal.SIGTERM)

        try:
            with LeaseKeeper(self.storage, trial._trial_id, on_orphaned=orphaned):
                result = run_trial(plan, trial, tracker, beats_best)
                record(self.study, trial, tracker, result)
            # It ended on its own: nothing to resume. Deleted only once Optuna knows, so
            # that a kill just before still leaves a checkpoint to resume from.
            discard(plan, trial)
            return result
        except BaseException as error:  # Ctrl-C, SIGTERM, or Lightning's exit on Ctrl-C
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            record_interruption(self.study, trial, tracker,
                                f"interrupted ({type(error).__name__})")
            raise


def record(study: optuna.Study, trial: optuna.Trial, tracker, result: TrialResult) -> None:
    """Tell Optuna how the trial ended, then end its MLflow run to match."""
    from tuner.study import tell
    from tuner.tracking import tags

    if result.state == TrialState.COMPLETE:
        tell(study, trial, values=result.values)
    else:
        if result.reason:
            trial.set_user_attr(tags.FAIL_REASON_ATTR, result.reason)
        tell(study, trial, state=result.state)
    if result.run_id is not None:
        tracker.end_trial(result.run_id, result.state, reason=result.reason,
                          pruned_at=result.pruned_at)


def record_interruption(study: optuna.Study, trial: optuna.Trial | int, tracker,
                        reason: str, killed: bool = True) -> None:
    """Leave nothing RUNNING, wherever in the trial the interruption landed.

    The run ends KILLED when the trial was stopped from outside (a signal), FAILED when
    its process crashed (``killed=False``)."""
    from tuner.study import tell
    from tuner.tracking import tags

    number = trial if isinstance(trial, int) else trial.number
    stored = study.get_trials(deepcopy=False)[number]
    state = stored.state
    if state == TrialState.RUNNING:
        try:
            study._storage.set_trial_user_attr(stored._trial_id, tags.FAIL_REASON_ATTR,
                                               reason)
            tell(study, number, state=TrialState.FAIL)
            state = TrialState.FAIL
        except UpdateFinishedTrialError:  # someone else ended it meanwhile (a reaper)
            state = study.get_trials(deepcopy=False)[number].state
    run_id = stored.user_attrs.get(tags.RUN_ID_ATTR)
    if run_id is not None:
        tracker.client.bind(run_id, number)
        failed = state == TrialState.FAIL
        tracker.end_trial(run_id, state, reason=reason if failed else None,
                          interrupted=failed and killed, only_if_running=True)

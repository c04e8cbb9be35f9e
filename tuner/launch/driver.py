"""The driver decides, slots train: the driver's side of every trial on this machine.

One driver per machine (``tuner sweep``, ``tuner worker``, rank 0 under torchrun) serves
each of its slots from a thread of its own, so a free slot gets its next order at once
(no batch barrier). A trial's life on the driver's side is :meth:`Driver.run_trial`:

    claim      the strategy claims a trial for the slot, under the study's lock
               (tuner.launch.strategy); its lease is kept from here on
    sample     the search space samples it (a repeat's params are fixed)
    run        its MLflow run, created while it samples (or the run of the attempt a
               repeat resumes, taken over)
    order      config, seed, run, resume point: handed to the slot (tuner.trial.order),
               which trains it; its metric batches stream into the run meanwhile
    outcome    how it ended, from the slot, or from the slot's death
    tell       Optuna told, then the strategy
    end        the run ended to match; the lease let go

A slot that dies (segfault, OOM kill, SIGKILL) ends only its trial: FAIL with the exit
status as the reason, and the slot is replaced. Ctrl-C or SIGTERM stops every slot,
marks each running trial FAIL ("interrupted"), its run KILLED, and leaves its
checkpoint for the repeat to resume from.

The driver is the one MLflow writer of its trials (tuner.launch.run_writer), and never
imports torch.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from tuner.config.plan import SweepPlan, to_yaml
from tuner.core import attrs
from tuner.core.errors import StorageUnavailable, SweepInterrupted, first_line
from tuner.core.masking import mask
from tuner.core.results import MetricRow, TrialResult, reason_of
from tuner.core.upstream import storage_of, trial_id_of
from tuner.launch.conclude import conclude, conclude_interrupted, end_orphaned_runs
from tuner.launch.run_writer import RunWriter
from tuner.launch.strategy import Search, Strategy
from tuner.launch.training_slot import MetricWrite, SlotDied, TrainingSlot
from tuner.launch.trial_runs import new_run_of, take_over_run
from tuner.study.leases import LeaseKeeper
from tuner.study.retries import root_of
from tuner.study.trials import best_trial
from tuner.study.user_attrs import set_trial_user_attrs
from tuner.trial import resume
from tuner.trial.order import Order

if TYPE_CHECKING:
    from tuner.tracking.runs import Tracker

WAIT_POLL = 0.5  # seconds between claims while the budget is taken but trials still run


class Driver:
    def __init__(self, plan: SweepPlan, study: optuna.Study, tracker: Tracker,
                 on_finished: Callable[[TrialResult], bool], deadline: float | None = None,
                 strategy: Strategy | None = None, say: Callable[[str], None] | None = None):
        """``on_finished`` sees each result and says whether the sweep should stop (too
        many failures); ``deadline``: unix seconds after which no trial starts; ``say``
        shows a line of a slot's (stderr by default)."""
        self.plan, self.study, self.tracker = plan, study, tracker
        self.on_finished, self.deadline = on_finished, deadline
        self.say = say or (lambda text: print(f"tuner: {text}", file=sys.stderr, flush=True))
        self.writer = RunWriter(tracker, study)
        self.strategy = strategy or Search(plan, study, self._end_abandoned)
        self.leases = LeaseKeeper(storage_of(study))
        # Runs a crash left RUNNING, off the trials' path (tuner.launch.conclude).
        self.writer.later(end_orphaned_runs, study, self.writer)
        self._shown = threading.Lock()  # one finished trial shown at a time
        self._stopping: str | None = None  # no slot starts another trial once set
        self._interrupted: str | None = None
        self._errors: list[BaseException] = []
        self._slots: list[TrainingSlot] = []

    # -- the slots -----------------------------------------------------------------------

    def run(self, slots: list[TrainingSlot], in_this_thread: bool = False) -> list[str]:
        """Serve every slot until none has anything left to train; why each stopped.
        ``in_this_thread``: one slot, served in the calling thread (a slot that trains in
        this very process must have the main thread: signals land there)."""
        self._slots = slots
        if in_this_thread:
            [slot] = slots
            return [self.serve(slot)]
        reasons: dict[int, str] = {}
        threads = [threading.Thread(target=self._serve_in_thread, args=(slot, reasons),
                                    name=f"tuner-driver-slot-{slot.index}", daemon=True)
                   for slot in slots]
        for thread in threads:
            thread.start()
        try:
            while any(thread.is_alive() for thread in threads):
                for thread in threads:
                    thread.join(0.1)  # a signal lands in this thread between joins
        except BaseException as error:
            self.interrupt(f"interrupted ({_signal_name(error)})", slots)
            for thread in threads:
                thread.join()
            raise
        if self._errors:
            raise self._errors[0]
        return [reasons[slot.index] for slot in slots if slot.index in reasons]

    def _serve_in_thread(self, slot: TrainingSlot, reasons: dict[int, str]) -> None:
        try:
            reasons[slot.index] = self.serve(slot)
        except (SweepInterrupted, KeyboardInterrupt):
            reasons[slot.index] = "stopped"
        except BaseException as error:  # the storage went away, say: stop the others now
            self._errors.append(error)
            self.interrupt(f"interrupted ({first_line(str(error))})", self._slots)

    def serve(self, slot: TrainingSlot) -> str:
        """Hand ``slot`` one trial after another; why it stopped: "budget", "timeout",
        "grid exhausted" or "stopped"."""
        try:
            while (why := self._why_stop()) is None:
                claimed = self.strategy.next_trial(slot.pid)
                if claimed.stop is not None:
                    return claimed.stop
                if claimed.wait:
                    time.sleep(WAIT_POLL)
                    continue
                result = self.run_trial(slot, claimed.trial)
                with self._shown:
                    if self.on_finished(result):
                        self.stop("failures")
            return why
        finally:
            slot.idle()

    def stop(self, why: str) -> None:
        """Let the running trials finish; start no other."""
        self._stopping = self._stopping or why

    def interrupt(self, why: str, slots: list[TrainingSlot]) -> None:
        """Stop now: every slot's trial is recorded as interrupted (its checkpoint kept),
        by the thread that serves it, once the slot has stopped."""
        self._interrupted = self._interrupted or why
        self.stop("stopped")
        for slot in slots:
            slot.stop_now()

    def _why_stop(self) -> str | None:
        if self._interrupted is not None:
            raise SweepInterrupted(self._interrupted)
        if self._stopping is not None:
            return "stopped"
        if self.deadline is not None and time.time() >= self.deadline:
            return "timeout"
        return None

    def close(self) -> None:
        """Once every slot is served: wait for the run writer; let go of the leases."""
        self.writer.close()
        self.leases.close()

    # -- a trial -------------------------------------------------------------------------

    def run_trial(self, slot: TrainingSlot, trial: optuna.Trial) -> TrialResult:
        """A claimed trial, from sample to end (see the module docstring)."""
        self.leases.keep(trial_id_of(trial))
        runs: list[str] = []  # the trial's run, once it has one
        try:
            try:
                order = self.prepare(trial, runs)
                result = self._train(slot, order)
            except Exception as error:  # preparing it failed: a bad sample, MLflow refused
                result = TrialResult(trial.number, TrialState.FAIL, reason=reason_of(error),
                                     run_id=runs[0] if runs else None,
                                     error_text=traceback.format_exc())
            except BaseException as error:  # Ctrl-C, SIGTERM: its slot has stopped
                conclude_interrupted(self.study, trial.number, self.writer,
                                     self._interrupted or f"interrupted ({_signal_name(error)})",
                                     runs[0] if runs else None)
                raise
            try:
                conclude(self.plan, self.study, trial, result, self.writer)
            except StorageUnavailable as error:  # Optuna cannot be told: its run ends anyway
                conclude_interrupted(self.study, trial.number, self.writer,
                                     f"interrupted ({error})", result.run_id)
                raise
            self.strategy.finished(result)
            return result
        finally:
            self.leases.release(trial_id_of(trial))

    def _train(self, slot: TrainingSlot, order: Order) -> TrialResult:
        """The slot's result; a slot that died gives the trial a FAIL of its own (and is
        replaced), unless it was interrupted."""
        if self._interrupted is not None:
            raise SweepInterrupted(self._interrupted)
        try:
            return slot.train(order, self._metrics_writer(order), self.say)
        except SlotDied as died:
            if died.interrupted or self._interrupted is not None:
                raise SweepInterrupted(self._interrupted or "interrupted (slot)") from None
            slot.replace()
            return TrialResult(order.number, TrialState.FAIL, reason=str(died),
                               run_id=order.run_id, killed=died.killed)

    def prepare(self, trial: optuna.Trial, runs: list[str]) -> Order:
        """Sample the trial, build its config and give it its run; ``runs`` gets the
        run's id as soon as there is one."""
        first = root_of(trial)
        # A new trial's run is created while it samples; a repeat may take over its
        # chain's run instead.
        new_run = (self.writer.first(new_run_of, self.study, self.tracker, trial, None)
                   if first == trial.number else None)
        try:
            params = self.plan.space.sample(trial)
            cfg = self.plan.trial_config(params)
            config_yaml = mask(to_yaml(cfg))
            seed = self.plan.cfg.seed + first
            # The trial shows what it trains with, in one write (tuner.study.user_attrs).
            set_trial_user_attrs(trial, {attrs.SEED_ATTR: seed, attrs.CONFIG_ATTR: config_yaml})
            resume_from = (None if new_run is not None else
                           take_over_run(self.plan, trial, self.writer, runs))
            if resume_from is None:
                resume.discard(self.plan, trial)  # an older checkpoint is not its run's
                run = new_run or self.writer.first(new_run_of, self.study, self.tracker, trial,
                                                   first)
                new_run = None
                runs.append(run.result())
                self.writer.later(self.tracker.log_trial_inputs, runs[0],
                                  {**params, "seed": seed}, config_yaml, trial=trial.number)
        except BaseException:
            if new_run is not None:  # it exists, linked to the trial: it ends with it
                with suppress(Exception):
                    runs.append(new_run.result())
            raise
        best = best_trial(self.study)
        return Order(
            trial_id_of(trial), trial.number, cfg, seed, runs[0],
            self.plan.trial_dir(trial.number),
            checkpoint_dir=(resume.chain_dir(self.plan, trial) if resume.supported(self.plan)
                            else None),
            resume=resume_from, best_value=None if best is None else best.values[0],
            keeps_weights=bool(self.plan.cfg.tracking.log_models),
            experiment_id=self.tracker.experiment_id, parent_run_id=self.tracker.parent_run_id)

    def _metrics_writer(self, order: Order) -> MetricWrite:
        def write(rows: list[MetricRow], done: Callable[[], None] | None) -> None:
            self.writer.later(self.tracker.log_metrics, order.run_id, rows, trial=order.number,
                              done=done)
        return write

    def _end_abandoned(self, trial: optuna.trial.FrozenTrial, reason: str) -> None:
        self.writer.later(self.tracker.end_abandoned, trial, reason, trial=trial.number)


def _signal_name(error: BaseException) -> str:
    """How an interruption reads in a trial's fail reason: the signal (SIGTERM), or
    the exception that carried it (KeyboardInterrupt for Ctrl-C)."""
    if isinstance(error, SweepInterrupted) and str(error):
        return str(error)
    return type(error).__name__

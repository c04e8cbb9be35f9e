"""The driver decides, slots train: the driver's side of every trial on this machine.

One driver per machine (``tuner sweep``, ``tuner worker``, rank 0 under torchrun) serves
each of its slots from a thread of its own (:meth:`Driver.serve`). A trial's life on the
driver's side:

    claim      the strategy claims a trial for the slot, under the study's lock
               (tuner.launch.strategy); its lease is kept from here on
    ready      sampled, configured, given its MLflow run, ordered (tuner.launch.prepare)
    order      handed to the slot, which trains it; its metric batches stream into its
               run meanwhile, and the driver claims the slot's next trial and makes its
               run (sampled once the slot frees, with every result then known)
    outcome    how it ended, from the slot, or from the slot's death
    tell       Optuna told, then the strategy (tuner.launch.conclude)
    end        the run ended to match; the lease let go

So a free slot finds its next trial claimed and its run made (no batch barrier; what is
left is sampling and the config, a few milliseconds): the part of readying that
needs no result is done while the slot trains, and sampling waits for the slot to free
so that the sampler sees the trial that just ended. With a ``timeout``, or failures
near ``max_failures``, the next trial is claimed only once the slot is free: one
claimed then might never start. A trial claimed but never started (Ctrl-C) ends FAIL
("interrupted (not started ...)") with its run, and the next command trains it.

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
from collections.abc import Callable
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from tuner.config.plan import SweepPlan
from tuner.core.errors import StorageUnavailable, SweepInterrupted, first_line
from tuner.core.results import MetricRow, TrialResult
from tuner.core.upstream import storage_of, trial_id_of
from tuner.launch.conclude import conclude, conclude_interrupted, end_orphaned_runs
from tuner.launch.prepare import Ready, claim_ahead, make_ready
from tuner.launch.run_writer import RunWriter
from tuner.launch.strategy import Strategy, strategy_for
from tuner.launch.training_slot import MetricWrite, SlotDied, TrainingSlot
from tuner.study.leases import LeaseKeeper
from tuner.trial.order import Order

if TYPE_CHECKING:
    from tuner.tracking.runs import Tracker

WAIT_POLL = 0.5  # seconds between claims while the budget is taken but trials still run
NOT_STARTED = "interrupted (not started: the sweep stopped first)"


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
        self.strategy = strategy or strategy_for(plan, study, self._end_abandoned)
        self.leases = LeaseKeeper(storage_of(study))
        # Runs a crash left RUNNING, off the trials' path (tuner.launch.conclude).
        self.writer.later(end_orphaned_runs, study, self.writer)
        self._shown = threading.Lock()  # one finished trial shown at a time
        self._stopping: str | None = None  # no slot starts another trial once set
        self._interrupted: str | None = None
        self._errors: list[BaseException] = []
        self._slots: list[TrainingSlot] = []
        self._failures = 0  # this driver's FAIL trials (max_failures stops it)
        self.cut_short: list[int] = []  # trials an interruption stopped while they trained

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
            self._release_leftovers()
            raise
        if self._errors:
            self._release_leftovers()
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
        """Hand ``slot`` one trial after another, each readied while the one before
        trains; why it stopped: "budget", "timeout", "grid exhausted" or "stopped"."""
        ahead: Ready | None = None
        try:
            while (why := self._why_stop()) is None:
                current, ahead = ahead or self.claim(slot), None
                if isinstance(current, Ready) and not current.sampled:
                    current = self._sample(current)
                if current is None:  # the budget is taken, but a running trial may fail
                    time.sleep(WAIT_POLL)
                    continue
                if isinstance(current, str):
                    return current
                result, ahead = self.run_trial(slot, current)
                with self._shown:
                    self._failures += result.state == TrialState.FAIL
                    if self.on_finished(result):
                        self.stop("failures")
            return why
        finally:
            if ahead is not None:  # readied, never started: the next command trains it
                self.release(ahead, NOT_STARTED)
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

    def claim(self, slot: TrainingSlot, ahead: bool = False) -> Ready | str | None:
        """The slot's next trial, claimed and readied (``ahead``: only its run made); a
        reason to stop; or None (wait)."""
        claimed = self.strategy.next_trial(slot.pid)
        if claimed.stop is not None or claimed.wait:
            return claimed.stop
        self.leases.keep(trial_id_of(claimed.trial))
        if ahead:
            return claim_ahead(self.study, self.writer, claimed.trial)
        return self._sample(Ready(claimed.trial))

    def _sample(self, ready: Ready) -> Ready:
        try:
            return make_ready(self.plan, self.study, self.writer, ready, self.strategy.segment)
        except BaseException:  # Ctrl-C while it was readied
            self.release(ready, "interrupted (while it was readied)")
            raise

    def run_trial(self, slot: TrainingSlot, ready: Ready) -> tuple[TrialResult, Ready | None]:
        """A readied trial: order -> outcome -> tell -> end. Returns its result and the
        slot's next trial, readied while this one trained (None: none yet)."""
        trial, ahead, began = ready.trial, None, False
        try:
            try:
                if ready.order is None:
                    result = ready.failed
                else:
                    if self._interrupted is not None:
                        raise SweepInterrupted(self._interrupted)
                    slot.begin(ready.order)
                    began = True
                    ahead = self._ready_ahead(slot)
                    result = self._outcome(slot, ready.order)
            except BaseException as error:  # Ctrl-C, SIGTERM: its slot has stopped
                if began:
                    self.cut_short.append(trial.number)
                conclude_interrupted(self.study, trial.number, self.writer,
                                     self._interrupted or f"interrupted ({_signal_name(error)})",
                                     ready.run_id)
                raise
            try:
                conclude(self.plan, self.study, trial, result, self.writer)
            except StorageUnavailable as error:  # Optuna cannot be told: its run ends anyway
                conclude_interrupted(self.study, trial.number, self.writer,
                                     f"interrupted ({error})", result.run_id)
                raise
            self.strategy.finished(result)
            return result, ahead
        except BaseException:
            if ahead is not None:  # readied, never started
                self.release(ahead, NOT_STARTED)
            raise
        finally:
            self.leases.release(trial_id_of(trial))

    def _ready_ahead(self, slot: TrainingSlot) -> Ready | None:
        """While the slot trains: its next trial, unless the sweep is stopping, may stop
        before it could start (a deadline; failures near ``max_failures``: a trial
        readied now would be left unstarted), or must wait."""
        limit = self.plan.cfg.max_failures
        if (self._stopping is not None or self._interrupted is not None or self.deadline
                or (limit and self._failures + len(self._slots) >= limit)):
            return None
        nxt = self.claim(slot, ahead=True)
        return nxt if isinstance(nxt, Ready) else None

    def _outcome(self, slot: TrainingSlot, order: Order) -> TrialResult:
        """The slot's result; a slot that died gives the trial a FAIL of its own (and is
        replaced), unless it was interrupted."""
        try:
            return slot.outcome(order, self._metrics_writer(order), self.say)
        except SlotDied as died:
            if died.interrupted or self._interrupted is not None:
                raise SweepInterrupted(self._interrupted or "interrupted (slot)") from None
            slot.replace()
            return TrialResult(order.number, TrialState.FAIL, reason=str(died),
                               run_id=order.run_id, killed=died.killed)

    def release(self, ready: Ready, reason: str) -> None:
        """A readied trial that no slot will train: FAIL with ``reason`` (a repeat trains
        it), its run ended; its lease let go."""
        ready.settle_run()
        try:
            conclude_interrupted(self.study, ready.trial.number, self.writer, reason,
                                 ready.run_id)
        finally:
            self.leases.release(trial_id_of(ready.trial))

    def _release_leftovers(self) -> None:
        """Once every slot's thread is done after an interruption: a trial this driver
        still holds a lease on was claimed and never ended (its thread's own release is
        the rule; this is the guard): FAIL as not started, its run ended, so that nothing
        is left RUNNING for the next command to wait out."""
        held = set(self.leases.held())
        if not held:
            return
        for trial in self.study.get_trials(deepcopy=False):
            if trial_id_of(trial) not in held:
                continue
            if trial.state == TrialState.RUNNING:
                reason = (self._interrupted or "interrupted") if trial.params else NOT_STARTED
                conclude_interrupted(self.study, trial.number, self.writer, reason)
            self.leases.release(trial_id_of(trial))

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

"""The driver's side of the slots: start them, watch them, replace the ones that die.

A slot claims its next trial the moment it is free (no batch barrier), so the driver
only listens: it waits on every slot's pipe and process at once and reacts to what
comes first. What it hears most is the slots' MLflow writes, which its writer thread
makes for them (tuner.launch.recorder), so that it answers at once; as trials end it
also replays what waits in the outbox for a tracking server that did not answer. A slot
that dies mid-trial (a segfault, the OOM killer, SIGKILL) takes only that trial with it:
the driver marks the trial FAIL with the exit status as its reason, ends its MLflow run
(KILLED when it was killed, FAILED otherwise) and starts a fresh slot on the same
devices.

Slots are started with multiprocessing's ``spawn``: a fresh interpreter, so nothing
(CUDA state, OpenMP thread pools, locks held by other threads) is inherited from the
driver, and each slot's device and thread settings apply before torch is imported.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.connection import Connection, wait

import optuna

from tuner.config.machine import SlotSpec
from tuner.config.plan import SweepPlan
from tuner.core.errors import SweepInterrupted
from tuner.core.exits import INTERRUPTED_EXIT, STOP_GRACE, exit_reason
from tuner.core.results import TrialResult
from tuner.launch.protocol import (
    CONTINUE,
    DONE,
    EXPORT,
    PREFLIGHT,
    STOP,
    Exported,
    Finished,
    Go,
    PreflightDone,
    Record,
    SlotError,
    Started,
    Stopped,
    Written,
)
from tuner.launch.recorder import Recorder
from tuner.launch.slot import slot_main
from tuner.study.leases import running_trial_of
from tuner.trial.recording import record_interruption
from tuner.trial.resume import discard

KILLED_BY = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)


class SlotsFailed(RuntimeError):
    """Every slot stopped on an error outside a trial (e.g. the storage went away)."""


@dataclass
class _Slot:
    spec: SlotSpec
    process: mp.process.BaseProcess
    conn: Connection
    trial: int | None = None  # the trial number it is training
    stopped: str | None = None  # why it stopped, once it has
    stopped_at: float = 0.0  # when (time.monotonic()): the first to stop had time to warm up
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)  # one sender at a time
    records: int = 0  # MLflow records it sent
    written: int = 0  # of which the recorder wrote


class SlotPool:
    def __init__(self, plan: SweepPlan, specs: list[SlotSpec]):
        self.plan, self.specs = plan, specs
        self._context = mp.get_context("spawn")
        self._slots: dict[int, _Slot] = {}
        self._go: Go | None = None
        self._recorder: Recorder | None = None  # writes the slots' MLflow records

    def start(self) -> SlotPool:
        """Start the slots (once): each imports torch and Lightning, seconds that the
        driver spends meanwhile on its own imports and checks."""
        for spec in self.specs:
            if spec.index not in self._slots:
                self._spawn(spec)
        return self

    def __enter__(self) -> SlotPool:
        return self.start()

    def __exit__(self, *exc) -> None:
        for slot in self._slots.values():
            if slot.process.is_alive():
                slot.process.kill()
            slot.process.join()
            slot.conn.close()

    def _spawn(self, spec: SlotSpec) -> None:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(target=slot_main, args=(self.plan, spec, theirs),
                                        name=f"tuner-slot-{spec.index}", daemon=True)
        process.start()
        theirs.close()  # ours is the only driver end: EOF on it means the slot is gone
        self._slots[spec.index] = _Slot(spec, process, ours)

    # -- before the study exists ---------------------------------------------------------

    def preflight(self) -> None:
        """Slot 0 trains one batch; raises the ConfigError if that fails."""
        slot = self._slots[self.specs[0].index]
        slot.conn.send(PREFLIGHT)
        while True:
            message = self._receive(slot)
            if isinstance(message, PreflightDone):
                if message.error is not None:
                    raise message.error
                return
            if isinstance(message, SlotError):
                raise RuntimeError(f"slot {slot.spec.index} failed before the preflight:\n"
                                   f"{message.text}")

    def _receive(self, slot: _Slot):
        """The next message from one slot; raises if the slot dies first."""
        try:
            return slot.conn.recv()
        except EOFError:
            slot.process.join()
            if slot.process.exitcode == INTERRUPTED_EXIT:
                raise SweepInterrupted("slot interrupted") from None
            raise RuntimeError(f"slot {slot.spec.index} {exit_reason(slot.process.exitcode)} "
                               "before the first trial") from None

    # -- the sweep ---------------------------------------------------------------------

    def run(self, go: Go, study: optuna.Study, tracker,
            on_finished: Callable[[TrialResult], bool]) -> list[str]:
        """Let every slot claim trials until all have stopped; returns why each stopped.

        ``on_finished`` gets each trial's result; when it returns True the pool asks the
        slots to stop after their current trial (e.g. too many failures).
        """
        self._go = go
        self._recorder = Recorder(tracker, study)
        for slot in self._slots.values():
            self._send(slot, go)
        stopping = False
        while any(s.stopped is None for s in self._slots.values()):
            live = [s for s in self._slots.values() if s.stopped is None]
            ready = wait([s.conn for s in live] + [s.process.sentinel for s in live])
            for slot in live:
                if slot.conn in ready or slot.process.sentinel in ready:
                    stopping |= self._drain(slot, study, tracker, on_finished, stopping)
        self._recorder.flush()  # the sweep's end reads every run
        errors = [e for s in self._slots.values() for e in s.errors]
        reasons = [s.stopped for s in self._slots.values() if s.stopped != "error"]
        if not reasons and errors:
            raise SlotsFailed(errors[0])
        return reasons

    def _drain(self, slot: _Slot, study, tracker, on_finished, stopping: bool) -> bool:
        """Handle what one slot sent, and its death; True when the sweep should stop."""
        stop = False
        for message in self._pending(slot):
            if isinstance(message, Finished):
                self._recorder.catch_up()
                if on_finished(message.result) and not stopping:
                    stop = True
                    for other in self._slots.values():
                        if other is not slot and other.stopped is None:
                            self._send(other, STOP)
                self._send(slot, Written(self._recorder.written(slot.conn)))
                self._send(slot, STOP if stop or stopping else CONTINUE)
            elif isinstance(message, Stopped):
                slot.stopped, slot.stopped_at = message.reason, time.monotonic()
            elif isinstance(message, SlotError):
                slot.errors.append(message.text)
        if slot.stopped is None and not slot.process.is_alive():
            slot.process.join()
            stop |= self._died(slot, study, tracker, on_finished, stopping)
        return stop

    def finish(self, export: bool) -> str | None:
        """The slots' last word, once :meth:`run` has returned: with ``export``, one of
        them (the first that stopped: it had time to warm up the export while the others
        trained, tuner.launch.slot) exports the study's best model (tuner.trial.model);
        the others are told they are done. Returns what the export did, in a line; None
        when nothing was exported here (the weights then stay for the next run of the
        study or ``tuner sync``)."""
        up = sorted((s for s in self._slots.values()
                     if s.stopped not in (None, "error") and s.process.is_alive()),
                    key=lambda s: s.stopped_at)
        exporter = up[0] if export and up else None
        for slot in up:
            self._send(slot, EXPORT if slot is exporter else DONE)
        if exporter is None:
            return None
        try:
            while True:
                message = exporter.conn.recv()
                if isinstance(message, Exported):
                    return message.said
                if isinstance(message, SlotError):
                    return f"the model was not exported: {message.text.strip().splitlines()[-1]}"
        except (EOFError, OSError):  # it died meanwhile
            return None

    @staticmethod
    def _send(slot: _Slot, message) -> None:
        with slot.lock, contextlib.suppress(OSError):  # it died: its sentinel will say so
            slot.conn.send(message)

    def _flush(self) -> None:
        """Wait for the recorder, before the driver writes a trial's records itself."""
        if self._recorder is not None:
            self._recorder.flush()

    def _died(self, slot: _Slot, study, tracker, on_finished, stopping: bool) -> bool:
        code = slot.process.exitcode
        if code == INTERRUPTED_EXIT:
            raise SweepInterrupted(f"slot {slot.spec.index} was interrupted")
        stop = False
        if slot.trial is None:  # it may have died between asking for a trial and saying so
            slot.trial = running_trial_of(study, slot.process.pid)
        if slot.trial is not None:
            number, slot.trial = slot.trial, None
            reason = f"slot process {exit_reason(code)} while training"
            killed = code is not None and code < 0 and -code in KILLED_BY
            self._flush()  # what the slot sent before it died comes first
            record_interruption(study, number, tracker, reason, killed=killed)
            # A failure of the trial's own (tuner.study.retries), so a repeat starts over.
            discard(self.plan, study.get_trials(deepcopy=False)[number])
            stop = on_finished(TrialResult(number, optuna.trial.TrialState.FAIL,
                                           reason=reason))
            if not (stop or stopping):
                slot.conn.close()
                self._spawn(slot.spec)
                self._send(self._slots[slot.spec.index], self._go)
                return False
        slot.stopped = "error"
        if not slot.errors:
            slot.errors.append(f"slot {slot.spec.index} {exit_reason(code)}")
        return stop

    def interrupt(self, study: optuna.Study | None, tracker) -> None:
        """Stop every slot now (Ctrl-C, SIGTERM): they mark their trials FAIL and runs
        KILLED; any that does not within STOP_GRACE is killed and its trial reaped."""
        if self._recorder is None and tracker is not None:  # before run(): none was sent
            self._recorder = Recorder(tracker, study)
        live = [s for s in self._slots.values() if s.process.is_alive()]
        for slot in live:
            with contextlib.suppress(ProcessLookupError):
                slot.process.terminate()
        deadline = time.monotonic() + STOP_GRACE
        for slot in live:
            # Write what it sends (its trial's end: KILLED) until it exits; learn which
            # trial it was training.
            while slot.process.is_alive() and time.monotonic() < deadline:
                wait([slot.conn, slot.process.sentinel], deadline - time.monotonic())
                for _ in self._pending(slot):
                    pass
            slot.process.join(max(0.0, deadline - time.monotonic()))
            for _ in self._pending(slot):  # what it sent just before it exited
                pass
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join()
                if slot.trial is not None and study is not None:
                    self._flush()
                    record_interruption(study, slot.trial, tracker,
                                        "interrupted (slot killed after the grace period)")
        self._flush()  # the caller ends the parent run next

    def _pending(self, slot: _Slot) -> Iterator[object]:
        """The messages a slot has sent so far, but for its MLflow records, which go to
        the recorder; keeps ``slot.trial`` (the trial it trains) up to date. Ends
        quietly if the slot died; its sentinel says how."""
        try:
            while slot.conn.poll():
                message = slot.conn.recv()
                if isinstance(message, Record):
                    self._recorder.take(slot.conn, message, partial(self._send, slot),
                                        slot.trial)
                    continue
                if isinstance(message, Started):
                    slot.trial = message.number
                elif isinstance(message, Finished):
                    slot.trial = None
                yield message
        except (EOFError, OSError):
            return

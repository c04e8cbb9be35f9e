"""The slot processes of a driver: started cheaply, watched, replaced when they die.

Slots are forked from a fork server (multiprocessing's ``forkserver``) that imported
torch and Lightning once (tuner.launch.slot_imports): the first slot of a command waits
for those imports, the second one, and a slot that replaces one that crashed, start in
a fraction of a second. The server never initialises CUDA and never trains, so nothing
of it (a CUDA context, OpenMP threads, another thread's lock) is inherited; each slot
applies its devices and threads (``CUDA_VISIBLE_DEVICES``, its torch threads) and the
driver's environment before it touches either (tuner.launch.slot).

Each slot is served by one of the driver's threads (tuner.launch.driver), through
:meth:`ProcessSlot.train`: hand the order over, pass its metric batches to the run
writer as they come, return the result, or raise
:class:`~tuner.launch.driver.SlotDied` with the exit status when the slot dies first.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable
from functools import partial
from multiprocessing.connection import wait

from tuner.config.machine import SlotSpec
from tuner.config.plan import SweepPlan
from tuner.core.errors import SweepInterrupted
from tuner.core.exits import INTERRUPTED_EXIT, STOP_GRACE, exit_reason
from tuner.core.results import TrialResult
from tuner.launch import reaping
from tuner.launch.protocol import (
    DONE,
    EXPORT,
    IDLE,
    PREFLIGHT,
    Exported,
    Finished,
    Metrics,
    Note,
    Order,
    PreflightDone,
    SlotError,
    Written,
)
from tuner.launch.slot import slot_main
from tuner.launch.training_slot import MetricWrite, SlotDied

SLOT_IMPORTS = "tuner.launch.slot_imports"  # what the fork server imports once


def slot_context() -> mp.context.BaseContext:
    """Where slots come from: a fork server with torch and Lightning imported."""
    context = mp.get_context("forkserver")
    context.set_forkserver_preload([SLOT_IMPORTS])
    return context


class ProcessSlot:
    """A slot process, as the driver's thread that serves it sees it."""

    def __init__(self, plan: SweepPlan, spec: SlotSpec, context: mp.context.BaseContext):
        self.plan, self.spec, self.index = plan, spec, spec.index
        self._context = context
        self._lock = threading.Lock()  # one sender at a time (this thread, the run writer)
        self.idle_since: float | None = None  # when it got its last order's end
        self._start()

    def _start(self) -> None:
        ours, theirs = self._context.Pipe()
        self.process = self._context.Process(
            target=slot_main, args=(self.plan, self.spec, theirs, dict(os.environ), os.getpid()),
            name=f"tuner-slot-{self.spec.index}", daemon=True)
        reaping.start(self.process)
        theirs.close()  # ours is the only driver end: EOF on it means the slot is gone
        self.conn = ours
        self._received = 0  # metric batches it sent
        self._error: str | None = None  # what it said of an error outside any trial

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, message: object) -> None:
        with self._lock, contextlib.suppress(OSError):  # it died: its sentinel says so
            self.conn.send(message)

    # -- tuner.launch.driver.TrainingSlot ----------------------------------------------

    def begin(self, order: Order) -> None:
        self.send(order)

    def outcome(self, order: Order, write_metrics: MetricWrite, say: Callable[[str], None]
                ) -> TrialResult:
        while True:
            message = self.receive()
            if isinstance(message, Metrics):
                self._received += 1
                write_metrics(message.rows, partial(self.send, Written(self._received)))
            elif isinstance(message, Note):
                say(f"slot {self.index}: {message.text}")
            elif isinstance(message, Finished):
                return message.result

    def replace(self) -> None:
        self.conn.close()
        self._start()

    def idle(self) -> None:
        self.idle_since = time.monotonic()
        self.send(IDLE)

    def stop_now(self) -> None:
        """SIGTERM: the slot sends what its trial logged and exits (status 130); one
        that has not within STOP_GRACE is killed."""
        with contextlib.suppress(ProcessLookupError):
            self.process.terminate()
        timer = threading.Timer(STOP_GRACE, self.kill)
        timer.daemon = True
        timer.start()

    def kill(self) -> None:
        if reaping.alive(self.process):
            self.process.kill()

    # -- reading ------------------------------------------------------------------------

    def receive(self) -> object:
        """The slot's next message; raises SlotDied once it has exited (after what it
        sent before it did)."""
        while True:
            wait([self.conn, self.process.sentinel])
            try:
                if self.conn.poll():
                    message = self.conn.recv()
                    if not isinstance(message, SlotError):
                        return message
                    self._error = message.text
                    continue
            except (EOFError, OSError):
                pass
            if not reaping.alive(self.process):
                reaping.wait_for_exit(self.process)
                raise SlotDied(reaping.exit_code(self.process), self._error)


class SlotPool:
    """The slots of one driver: started together, stopped together (a context manager)."""

    def __init__(self, plan: SweepPlan, specs: list[SlotSpec]):
        self.plan, self.specs = plan, specs
        self._slots: list[ProcessSlot] = []
        self._starting: threading.Thread | None = None
        self._failed: BaseException | None = None

    def start(self) -> SlotPool:
        """Start the slots (once), from a thread: the first is forked only once the fork
        server has imported torch and Lightning, seconds that the driver spends
        meanwhile on its own imports and checks."""
        if self._starting is None:
            self._starting = threading.Thread(target=self._start_all, name="tuner-slots-start",
                                              daemon=True)
            self._starting.start()
        return self

    def _start_all(self) -> None:
        try:
            context = slot_context()
            for spec in self.specs:
                self._slots.append(ProcessSlot(self.plan, spec, context))
        except BaseException as error:  # said by `slots`, in the driver's thread
            self._failed = error

    @property
    def slots(self) -> list[ProcessSlot]:
        """The slots, once all are started."""
        if self._starting is not None:
            self._starting.join()
        if self._failed is not None:
            raise RuntimeError(f"the slot processes could not be started: {self._failed!r}"
                               ) from self._failed
        return self._slots

    def __enter__(self) -> SlotPool:
        return self.start()

    def __exit__(self, *exc) -> None:
        if self._starting is not None:
            self._starting.join()
        for slot in self._slots:
            slot.kill()
            reaping.wait_for_exit(slot.process)
            slot.conn.close()

    def preflight(self) -> None:
        """Slot 0 trains one batch; raises the ConfigError if that fails."""
        slot = self.slots[0]
        slot.send(PREFLIGHT)
        try:
            message = slot.receive()
        except SlotDied as died:
            if died.interrupted:
                raise SweepInterrupted("slot interrupted") from None
            raise RuntimeError(f"slot {slot.index} {exit_reason(died.exitcode)} before the "
                               f"first trial{died.said}") from None
        if isinstance(message, PreflightDone) and message.error is not None:
            raise message.error

    def interrupt(self) -> None:
        """Stop every slot now (Ctrl-C, SIGTERM before any trial was handed out)."""
        if self._starting is not None:
            self._starting.join()
        for slot in self._slots:
            slot.stop_now()
        deadline = time.monotonic() + STOP_GRACE
        for slot in self._slots:
            reaping.wait_for_exit(slot.process, max(0.0, deadline - time.monotonic()))
            slot.kill()

    def finish(self, export: bool) -> str | None:
        """The slots' last word, once the driver has served them all: with ``export``,
        one of them (the first that went idle: it had time to warm up the export while
        the others trained, tuner.launch.slot) exports the study's best model
        (tuner.trial.model); the others are told they are done. Returns what the
        export did, in a line; None when nothing was exported here (the weights then
        stay for the next run of the study or ``tuner sync``)."""
        up = sorted((s for s in self._slots if reaping.alive(s.process)),
                    key=lambda s: s.idle_since if s.idle_since is not None else float("inf"))
        exporter = up[0] if export and up else None
        for slot in up:
            slot.send(EXPORT if slot is exporter else DONE)
        if exporter is None:
            return None
        try:
            message = exporter.receive()
        except SlotDied as died:
            if died.exitcode == INTERRUPTED_EXIT:
                raise SweepInterrupted("slot interrupted") from None
            return f"the model was not exported: the slot {exit_reason(died.exitcode)}{died.said}"
        return message.said if isinstance(message, Exported) else None

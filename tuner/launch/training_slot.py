"""What the driver needs of a slot: take an order, say how it ended, be replaced, go
idle, stop now.

Two things are slots: a slot process (tuner.launch.pool), and this very process (rank 0
under torchrun, tuner.launch.in_process). The driver (tuner.launch.driver) serves
either through :class:`TrainingSlot`.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Protocol

from tuner.core.exits import INTERRUPTED_EXIT, exit_reason
from tuner.core.results import MetricRow, TrialResult
from tuner.trial.order import Order

KILLED_BY = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)

# A batch of a trial's metric rows, and what to run once it is written (or None).
MetricWrite = Callable[[list[MetricRow], Callable[[], None] | None], None]


class TrainingSlot(Protocol):
    """Where a trial trains: a slot process (tuner.launch.pool), or this very process
    (rank 0 under torchrun)."""

    index: int
    pid: int  # the process that trains: the owner of the trials it is handed

    def begin(self, order: Order) -> None:
        """Hand the slot its order (a slot process starts training it at once)."""
        ...

    def outcome(self, order: Order, write_metrics: MetricWrite, say: Callable[[str], None]
                ) -> TrialResult:
        """How the order ended, once it has; its metric batches go to ``write_metrics``
        meanwhile, and ``say`` shows what the slot has to say (its storage away, say).
        Raises :class:`SlotDied` when the slot dies first."""
        ...

    def replace(self) -> None:
        """Start a fresh slot in place of one that died."""
        ...

    def idle(self) -> None:
        """No more orders for this slot."""
        ...

    def stop_now(self) -> None:
        """Interrupt the slot's trial (Ctrl-C, SIGTERM): :meth:`train` then raises."""
        ...


class SlotDied(Exception):
    """A slot process ended while it had work; ``error``: the traceback it sent first,
    if it sent one (an error outside any trial)."""

    def __init__(self, exitcode: int | None, error: str | None = None):
        self.exitcode, self.error = exitcode, error
        super().__init__(f"slot process {exit_reason(exitcode)} while training{self.said}")

    @property
    def said(self) -> str:
        """The last line of what it sent, as ": ..." (or "")."""
        lines = (self.error or "").strip().splitlines()
        return f": {lines[-1]}" if lines else ""

    @property
    def killed(self) -> bool:
        """Killed from outside (the OOM killer's SIGKILL, say): its run reads KILLED."""
        code = self.exitcode
        return code is not None and code < 0 and -code in KILLED_BY

    @property
    def interrupted(self) -> bool:
        return self.exitcode == INTERRUPTED_EXIT

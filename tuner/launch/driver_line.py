"""A slot's end of its pipe, and its watch over the driver at the other end.

:class:`DriverLine` sends the slot's messages and keeps each metric batch it sent until
the driver says it is written (:class:`~tuner.launch.protocol.Written`, which the line
takes in whenever it reads), so that nothing is lost if the driver dies:
:class:`DriverWatch` notices that at once, interrupts the trial, and the slot writes
what the driver had not (tuner.launch.orphan).
"""

from __future__ import annotations

import os
import select
import signal
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from tuner.core.results import MetricRow
from tuner.launch.protocol import Metrics, Written


class DriverLine:
    def __init__(self, conn):
        self.conn = conn
        self._sent = 0  # metric batches sent so far
        self._kept: deque[tuple[int, int, list[MetricRow]]] = deque()  # (count, trial, rows)
        self._held: list[object] = []  # read while looking for Written, not yet by recv()

    def send(self, message: object) -> None:
        self.conn.send(message)

    def send_metrics(self, number: int, rows: list[MetricRow]) -> None:
        """Send a batch of trial ``number``'s rows; kept until the driver wrote it."""
        self._take_in()
        self._sent += 1
        self._kept.append((self._sent, number, rows))
        with suppress(OSError):  # the driver is gone: the batch waits for tuner.launch.orphan
            self.conn.send(Metrics(number, rows))

    def unwritten(self) -> list[tuple[int, list[MetricRow]]]:
        """The batches sent that the driver has not said it wrote: (trial, rows)."""
        self._take_in()
        return [(number, rows) for _, number, rows in self._kept]

    def poll(self) -> bool:
        """Whether the driver said something (other than :class:`Written`)."""
        self._take_in()
        return bool(self._held)

    def recv(self) -> object | None:
        """The driver's next word; None if it is gone."""
        try:
            while not self._held:
                self._take(self.conn.recv())
        except (EOFError, OSError):
            return None
        return self._held.pop(0)

    def _take_in(self) -> None:
        try:
            while self.conn.poll():
                self._take(self.conn.recv())
        except (EOFError, OSError):
            pass

    def _take(self, message: object) -> None:
        if isinstance(message, Written):
            while self._kept and self._kept[0][0] <= message.count:
                self._kept.popleft()
        else:
            self._held.append(message)


class DriverWatch:
    """Notices that the slot's driver died (SIGKILL, say) while a trial trains, and
    interrupts the trial with SIGTERM, so that the slot ends it rather than trains on
    for nobody. The driver is watched by its pid (a slot's parent may be a fork
    server), through a pidfd where the kernel has them."""

    def __init__(self, driver_pid: int):
        self.driver_pid = driver_pid
        self.driver_gone = False
        self._training = False
        self._started = False

    @contextmanager
    def training(self) -> Iterator[None]:
        if not self._started:
            self._started = True
            threading.Thread(target=self._watch, name="tuner-driver-watch", daemon=True).start()
        self._training = True
        try:
            yield
        finally:
            self._training = False

    def _watch(self) -> None:
        _wait_for_exit(self.driver_pid)
        self.driver_gone = True
        if self._training:
            os.kill(os.getpid(), signal.SIGTERM)


def _wait_for_exit(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # no pidfds here: look every second
        while _alive(pid):
            threading.Event().wait(1.0)
        return
    try:
        select.select([fd], [], [])
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

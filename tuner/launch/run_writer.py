"""The driver's one MLflow writer: a thread, so that no trial waits on MLflow.

The driver hands it every write of its trials' runs as a call of its
:class:`~tuner.tracking.runs.Tracker`: the slots' metric batches as they stream in, a
trial's params and config, its end. The thread makes them in the order they came, with
one exception: a new trial's run is created before the backlog (:meth:`RunWriter.first`),
so that an order waits for one write at most (the one in progress), never for the
backlog; that run is new, so no write before it concerns it. A read the driver needs
(whether a run can be resumed, its logged steps: :meth:`RunWriter.ask`) keeps its place,
after every write before it.

A write that MLflow refuses does not stop the sweep: it is reported on stderr, and a
call whose result the driver waits for raises in the driver instead (the trial fails
with it). When the store cannot take writes (a tracking server that does not answer, a
local store on a full disk), the tracker's writes wait in the outbox
(tuner.tracking.resilient) and return at once; when not even the outbox can be written
(the disk under both is full), the writes are held here, in order, and tried again every
few seconds, and at the sweep's end (:meth:`RunWriter.close`), which says what it could
not write.
"""

from __future__ import annotations

import itertools
import queue
import sys
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from tuner.core.errors import first_line
from tuner.tracking.breaker import is_unavailable

if TYPE_CHECKING:
    import optuna

    from tuner.tracking.runs import Tracker

T = TypeVar("T")
_FIRST, _IN_ORDER = 0, 1


class RunWriter:
    def __init__(self, tracker: Tracker, study: optuna.Study | None):
        self.tracker, self.study = tracker, study
        self._tasks: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()
        self._held = _Held()
        self._thread = threading.Thread(target=self._run, name="tuner-run-writer", daemon=True)
        self._thread.start()

    def later(self, write: Callable[..., Any], *args: Any, trial: int | None = None,
              done: Callable[[], None] | None = None, **kwargs: Any) -> None:
        """Make ``write(*args, **kwargs)`` in order; ``done`` runs once it is made (or
        refused). ``trial``: whose record it is, for the report of a refusal."""
        self._put(_IN_ORDER, _Write(partial(write, *args, **kwargs), trial, done))

    def ask(self, read: Callable[..., T], *args: Any) -> Future[T]:
        """``read(*args)`` in order, after every write queued before it."""
        return self._future(_IN_ORDER, read, args)

    def first(self, call: Callable[..., T], *args: Any) -> Future[T]:
        """``call(*args)`` before the backlog (a new trial's run)."""
        return self._future(_FIRST, call, args)

    def catch_up(self) -> None:
        """Queue a replay of the finished trials' records that wait for the tracking
        server, if any (a model waits for the end's replay, which rebuilds it: the
        driver does not import torch)."""
        from tuner.tracking.replay import catch_up

        if self.study is not None and self.tracker.client.outbox is not None:
            self._put(_IN_ORDER, lambda: catch_up(self.tracker.client, self.study,
                                                  rebuild=None))

    def flush(self) -> None:
        """Wait until everything queued so far is done (or held)."""
        self._tasks.join()

    def close(self) -> None:
        """The end: everything queued done, held writes tried once more; what still
        could not be written is said on stderr."""
        self._tasks.join()
        self._put(_IN_ORDER, self._held.retry)
        self._tasks.join()
        self._held.give_up()

    def _future(self, priority: int, call: Callable[..., T], args: tuple) -> Future[T]:
        future: Future[T] = Future()

        def task() -> None:
            try:
                future.set_result(call(*args))
            except Exception as error:
                future.set_exception(RecordFailed(f"{_why(error)}"))

        self._put(priority, task)
        return future

    def _put(self, priority: int, task: Callable[[], None]) -> None:
        self._tasks.put((priority, next(self._order), task))

    def _run(self) -> None:
        while True:
            try:
                _, _, task = self._tasks.get(timeout=HELD_RETRY_S if self._held else None)
            except queue.Empty:  # nothing new for a while: try the held writes again
                self._held.retry()
                continue
            try:
                if isinstance(task, _Write):
                    self._held.write(task)
                else:
                    task()
            except BaseException as error:  # never leave flush() waiting
                print(f"tuner: an MLflow record was lost: {error!r}", file=sys.stderr,
                      flush=True)
            finally:
                self._tasks.task_done()


HELD_RETRY_S = 5.0  # seconds between tries of writes held for a store that takes none


class _Write:
    """One queued write; :meth:`attempt` says whether it is done with (made, or refused
    for good and reported) or must be held (the store takes no writes now)."""

    def __init__(self, call: Callable[[], Any], trial: int | None,
                 done: Callable[[], None] | None):
        self.call, self.trial, self.done = call, trial, done
        self.error: BaseException | None = None

    def attempt(self) -> bool:
        try:
            self.call()
        except Exception as error:
            if is_unavailable(error):
                self.error = error
                return False
            print(f"tuner: MLflow did not take a record of {self.who()} ({self.what()}): "
                  f"{_why(error)}", file=sys.stderr, flush=True)
        if self.done is not None:
            self.done()
        return True

    def who(self) -> str:
        return f"trial {self.trial}" if self.trial is not None else "a trial"

    def what(self) -> str:
        return getattr(getattr(self.call, "func", self.call), "__name__", "write")


class _Held:
    """Writes that no store could take yet, in the order they came (the writer thread
    alone touches it)."""

    def __init__(self) -> None:
        self.writes: deque[_Write] = deque()

    def __bool__(self) -> bool:
        return bool(self.writes)

    def write(self, write: _Write) -> None:
        if self.writes:  # an earlier write waits: this one queues behind it
            self.writes.append(write)
        elif not write.attempt():
            self.writes.append(write)
            print(f"tuner: MLflow records wait in memory: the store and its outbox take no "
                  f"writes ({_why(write.error)}); trying again every {HELD_RETRY_S:g} s",
                  file=sys.stderr, flush=True)

    def retry(self) -> None:
        while self.writes and self.writes[0].attempt():
            self.writes.popleft()

    def give_up(self) -> None:
        if self.writes:
            print(f"tuner: {len(self.writes)} MLflow record(s) could not be written and are "
                  f"lost ({_why(self.writes[0].error)}): free the disk under the MLflow "
                  "store, then run the same command again", file=sys.stderr, flush=True)
            self.writes.clear()


class RecordFailed(RuntimeError):
    """MLflow refused a write or a read that the driver waited for."""


def _why(error: BaseException) -> str:
    return f"{type(error).__name__}: {first_line(str(error))}"

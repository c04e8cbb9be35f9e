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
with it). With a tracking server that does not answer, the tracker's writes wait in the
outbox (tuner.tracking.resilient) and return at once.
"""

from __future__ import annotations

import itertools
import queue
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

from tuner.core.errors import first_line

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
        self._thread = threading.Thread(target=self._run, name="tuner-run-writer", daemon=True)
        self._thread.start()

    def later(self, write: Callable[..., Any], *args: Any, trial: int | None = None,
              done: Callable[[], None] | None = None, **kwargs: Any) -> None:
        """Make ``write(*args, **kwargs)`` in order; ``done`` runs once it is made (or
        refused). ``trial``: whose record it is, for the report of a refusal."""
        def task() -> None:
            try:
                write(*args, **kwargs)
            except Exception as error:
                who = f"trial {trial}" if trial is not None else "a trial"
                print(f"tuner: MLflow did not take a record of {who} "
                      f"({getattr(write, '__name__', 'write')}): {_why(error)}",
                      file=sys.stderr, flush=True)
            finally:
                if done is not None:
                    done()

        self._put(_IN_ORDER, task)

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
        """Wait until everything queued so far is done."""
        self._tasks.join()

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
            _, _, task = self._tasks.get()
            try:
                task()
            except BaseException as error:  # never leave flush() waiting
                print(f"tuner: an MLflow record was lost: {error!r}", file=sys.stderr,
                      flush=True)
            finally:
                self._tasks.task_done()


class RecordFailed(RuntimeError):
    """MLflow refused a write or a read that the driver waited for."""


def _why(error: BaseException) -> str:
    return f"{type(error).__name__}: {first_line(str(error))}"

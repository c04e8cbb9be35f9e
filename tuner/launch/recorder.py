"""The driver's one MLflow writer for its slots: a thread, so that no slot waits on it.

The pool (tuner.launch.pool) hands every :class:`~tuner.launch.protocol.Record` and
:class:`~tuner.launch.protocol.Ask` a slot sends to :meth:`Recorder.submit` and goes
back to listening: it answers a finished trial's ``Finished`` at once, while that
trial's last metrics and its end are still being written. The thread makes the writes
in the order they came, with one exception: a slot's ask for its next trial's run goes
first, so that a trial waits for one write at most (the one in progress), never for
the backlog; that run is new, so no write before it concerns it. Reads (whether a run
can be resumed, its logged steps) keep their place, after every write before them.

After each record the thread tells the slot how many of its records are written
(:class:`~tuner.launch.protocol.Written`): the slot keeps the others, and writes them
itself if the driver dies (tuner.launch.records). The pool waits for the thread
(:meth:`Recorder.flush`) before it writes anything itself (a dead slot's trial, an
interruption) and before the sweep's end reads the runs.
"""

from __future__ import annotations

import itertools
import queue
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from tuner.core import attrs
from tuner.core.errors import first_line
from tuner.launch.protocol import Answer, Ask, Record, Written

if TYPE_CHECKING:
    import optuna

    from tuner.tracking.runs import Tracker

# The TrialRecords methods a slot may ask its driver to call; anything else is refused.
WRITES = frozenset({"log_trial_inputs", "resume_trial", "log_metrics", "end_trial",
                    "end_abandoned", "log_error", "bind", "set_tag", "log_text",
                    "log_artifact"})
ASKS = frozenset({"create_trial_run", "why_not_resume", "logged_steps"})
FIRST = frozenset({"create_trial_run"})  # asks that go before the backlog (see above)
ENDED_BEFORE_ITS_RUN = "interrupted before its MLflow run was created"


def apply(tracker: Tracker, message: Record, number: int | None = None) -> Answer | None:
    """Make one of a slot's writes with ``tracker``. For an :class:`Ask`, the answer to
    send back; for a :class:`Record`, None. A write that MLflow refuses does not stop the
    sweep: an ``Ask`` answers with the error (the trial fails with it), a ``Record`` is
    reported on stderr. ``number``: the trial the slot trains, for that report."""
    allowed = ASKS if isinstance(message, Ask) else WRITES
    try:
        if message.op not in allowed:
            raise ValueError(f"a slot asked for {message.op!r}, which is not a trial record")
        value = getattr(tracker, message.op)(*message.args, **message.kwargs)
    except Exception as error:
        why = f"{type(error).__name__}: {first_line(str(error))}"
        if isinstance(message, Ask):
            return Answer(None, why)
        who = f"trial {number}" if number is not None else "a trial"
        print(f"tuner: MLflow did not take a record of {who} ({message.op}): {why}",
              file=sys.stderr, flush=True)
        return None
    return Answer(value) if isinstance(message, Ask) else None


class Recorder:
    def __init__(self, tracker: Tracker, study: optuna.Study | None):
        self.tracker, self.study = tracker, study
        self._tasks: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()
        self._received: dict[object, int] = {}  # per slot: records received
        self._written: dict[object, int] = {}  # per slot: of which written
        self._thread = threading.Thread(target=self._run, name="tuner-recorder", daemon=True)
        self._thread.start()

    def take(self, slot: object, message: Record, send: Callable[[object], None],
             number: int | None = None) -> None:
        """Queue what ``slot`` (a key for one slot process) sent: a record to write, or an
        ask to answer with ``send`` (after :class:`Written`, so that the slot stops
        keeping what is written: tuner.launch.records). ``number``: the trial the slot
        trains, for messages."""
        if isinstance(message, Ask):
            def reply(answer: Answer | None) -> None:
                send(Written(self.written(slot)))
                send(answer)
        else:
            count = self._received[slot] = self._received.get(slot, 0) + 1

            def reply(answer: Answer | None) -> None:
                self._written[slot] = count
        first = isinstance(message, Ask) and message.op in FIRST

        def task() -> None:
            answer = apply(self.tracker, message, number)
            reply(answer)
            if message.op == "create_trial_run" and answer.error is None:
                self._link(message.args[0], answer.value)

        self._put(0 if first else 1, task)

    def _link(self, number: int, run_id: str) -> None:
        """Record a new run on its trial (the slot does too, once it has the answer). A
        slot interrupted while it waited for the answer records no run on its trial, and
        the run would stay RUNNING with no trial to end it; if the trial has ended by
        now, the run ends with it. Either this write comes first and the slot's
        interruption reads it back (tuner.trial.recording), or the trial ended first
        and this ends the run."""
        if self.study is None:
            return
        storage = self.study._storage
        trial_id = storage.get_trial_id_from_study_id_trial_number(self.study._study_id,
                                                                    number)
        try:
            storage.set_trial_user_attr(trial_id, attrs.RUN_ID_ATTR, run_id)
        except UpdateFinishedTrialError:
            self.tracker.bind(run_id, number)
            self.tracker.end_trial(run_id, TrialState.FAIL, reason=ENDED_BEFORE_ITS_RUN,
                                   interrupted=True, only_if_running=True)

    def written(self, slot: object) -> int:
        """How many of ``slot``'s records are written."""
        return self._written.get(slot, 0)

    def catch_up(self) -> None:
        """Queue a replay of the finished trials' records that wait for the tracking
        server, if any (a model waits for the end's replay, which rebuilds it: the
        driver does not import torch)."""
        from tuner.tracking.replay import catch_up  # MLflow: not before slots start

        if self.study is not None:
            self._put(1, lambda: catch_up(self.tracker.client, self.study, rebuild=None))

    def flush(self) -> None:
        """Wait until everything queued so far is done."""
        self._tasks.join()

    def _put(self, priority: int, task: Callable[[], None]) -> None:
        self._tasks.put((priority, next(self._order), task))

    def _run(self) -> None:
        while True:
            _, _, task = self._tasks.get()
            try:
                task()
            except BaseException as error:  # never leave flush() waiting
                print(f"tuner: a slot's MLflow record was lost: {error!r}", file=sys.stderr,
                      flush=True)
            finally:
                self._tasks.task_done()

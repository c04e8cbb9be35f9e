"""A slot's MLflow writes, made by its driver: slots train, the driver records.

A slot holds :class:`PipeRecords` as its trials' records (tuner.trial.records): each
write goes over the slot's pipe as a :class:`~tuner.launch.protocol.Record`, and the
driver's writer thread makes it with the driver's :class:`~tuner.tracking.runs.Tracker`
(tuner.launch.recorder), off the trial's path. So a slot never imports MLflow while it
trains (about 3 s of a slot's start-up), the study's MLflow store has one writer per
machine, and the outbox and breaker of a tracking server that does not answer live in
one process. A call whose result the trial needs (its run's id, whether a run can be
resumed, a resumed run's logged steps) is an :class:`~tuner.launch.protocol.Ask`: the
slot waits for the driver's :class:`~tuner.launch.protocol.Answer`.

Nothing is lost when the driver dies. The slot keeps each record it sent until the
driver says it is written (:class:`~tuner.launch.protocol.Written`: written, or waiting
durably in the outbox). If the pipe breaks, the slot imports MLflow then, writes the
records it still keeps (one may be written twice: the same params, tags, text and end;
MLflow's SQL stores drop a metric point they hold already) and writes the rest of its
trial's records itself.
"""

from __future__ import annotations

import signal
import sys
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from functools import partial
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig
from optuna.trial import FrozenTrial, TrialState

from tuner.launch.protocol import STOP, Answer, Ask, Channel, Record, Written

if TYPE_CHECKING:
    from tuner.tracking.runs import Tracker


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM (their Python handlers run in this, the main, thread) until
    the block is done, then deliver the first that came to the handler in place before."""
    caught: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in held}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if caught:
            signal.raise_signal(caught[0])


class RecordsFailed(RuntimeError):
    """The driver could not make a write the trial waited for (e.g. MLflow refused it)."""


class DriverLine:
    """The slot's end of its pipe. It takes in what the driver says on its own
    (:class:`Written`, handed to ``on_written``) wherever the slot reads, and keeps a
    ``STOP`` that came while the slot waited for an answer (so that the claim loop still
    sees it)."""

    def __init__(self, conn: Channel):
        self.conn = conn
        self.stop = False
        self.on_written: Callable[[int], None] = lambda count: None
        self._held: list[object] = []  # read by poll(), not yet by recv()

    def send(self, message: object) -> None:
        self.conn.send(message)

    def poll(self) -> bool:
        while not self._held and self.conn.poll():
            self._take(self.conn.recv())
        return bool(self._held)

    def recv(self) -> object:
        while not self._held:
            self._take(self.conn.recv())
        return self._held.pop(0)

    def _take(self, message: object) -> None:
        if isinstance(message, Written):
            self.on_written(message.count)
        else:
            self._held.append(message)

    def answer(self) -> Answer:
        """The driver's answer to the ``Ask`` just sent (EOFError if it died)."""
        while True:
            message = self.recv()
            if isinstance(message, Answer):
                return message
            if message == STOP:
                self.stop = True


class PipeRecords:
    """A slot's :class:`~tuner.trial.records.TrialRecords`: sent to the driver."""

    def __init__(self, line: DriverLine, tracking: DictConfig, study_name: str,
                 experiment_id: str, parent_run_id: str):
        self.line = line
        self.tracking, self.study_name = tracking, study_name
        self.experiment_id, self.parent_run_id = experiment_id, parent_run_id
        self._sent = 0  # records sent so far
        self._kept: deque[tuple[int, Record]] = deque()  # sent, not known to be written
        self._direct: Tracker | None = None  # once the driver is gone
        self._own: Tracker | None = None  # built for the export, or once the driver is gone
        self._requested: object | None = None  # a run asked for, its answer not yet read
        line.on_written = self._written

    def _written(self, count: int) -> None:
        while self._kept and self._kept[0][0] <= count:
            self._kept.popleft()

    def driver_gone(self) -> Tracker:
        """The pipe broke: write what the driver may not have, and from now on write
        directly. Returns the tracker that does. A Ctrl-C or SIGTERM meanwhile (the slot
        notices its driver's death by a signal too, tuner.study.leases) waits until
        this is done: cut short, it would lose the records."""
        if self._direct is None:
            self._direct = self.tracker()  # MLflow, only now
            while self._kept:
                _, record = self._kept.popleft()
                try:
                    getattr(self._direct, record.op)(*record.args, **record.kwargs)
                except Exception as error:  # one refused record must not cost the others
                    print(f"tuner: MLflow did not take a record ({record.op}): {error}",
                          file=sys.stderr, flush=True)
        return self._direct

    def tracker(self) -> Tracker:
        """A tracker of this slot's own, writing directly (the best model's export at the
        end of the sweep; the driver's work once it is gone). Imports MLflow."""
        if self._own is None:
            from tuner.tracking.runs import Tracker

            self._own = Tracker(self.tracking, self.study_name)
            self._own.attach(self.experiment_id, self.parent_run_id)
        return self._own

    # -- sending -------------------------------------------------------------------------

    def _write(self, op: str, *args: Any, **kwargs: Any) -> None:
        if self._direct is None:
            record = Record(op, args, kwargs)
            try:
                self.line.send(record)
            except OSError:  # the driver is gone (BrokenPipeError)
                with _signals_deferred():
                    getattr(self.driver_gone(), op)(*args, **kwargs)
            else:
                self._sent += 1
                self._kept.append((self._sent, record))
            return
        getattr(self._direct, op)(*args, **kwargs)

    def _ask(self, op: str, *args: Any) -> Any:
        if self._direct is None:
            self.drop_unclaimed_answer()
            try:
                self.line.send(Ask(op, args))
            except OSError:
                with _signals_deferred():
                    return getattr(self.driver_gone(), op)(*args)
            return self._answer(op, args)
        return getattr(self._direct, op)(*args)

    def _answer(self, op: str, args: tuple) -> Any:
        """The driver's answer to the ``Ask`` sent last; made here if the driver is gone."""
        return self._use_answer(self._read_answer(), op, args)

    def _read_answer(self) -> Answer | None:
        """The driver's next answer; None if the driver is gone."""
        try:
            return self.line.answer()
        except (EOFError, OSError):
            return None

    def _use_answer(self, answer: Answer | None, op: str, args: tuple) -> Any:
        if answer is None:  # the driver died before it answered: this slot makes it
            with _signals_deferred():
                return getattr(self.driver_gone(), op)(*args)
        if answer.error is not None:
            raise RecordsFailed(answer.error)
        return answer.value

    def drop_unclaimed_answer(self) -> None:
        """An ask whose answer was never claimed (its trial was interrupted or failed
        before it read its run): read that answer now, so that it is not taken for the
        next one, nor for the driver's reply to the trial's end (tuner.launch.slot)."""
        if self._requested is not None:
            with suppress(EOFError, OSError):
                self.line.answer()
            self._requested = None

    # -- TrialRecords ----------------------------------------------------------------------

    def start_trial(self, number: int, params: Mapping[str, Any], config_yaml: str,
                    retry_of: int | None = None) -> str:
        # The trial waits only for its run's id; the driver logs the params and config
        # while it trains.
        run_id = self._ask("create_trial_run", number, retry_of)
        self.log_trial_inputs(run_id, params, config_yaml)
        return run_id

    def request_trial_run(self, number: int) -> Callable[[], str]:
        # The driver creates the run while the trial samples its params and builds its
        # config (6.6 ms a trial here that the slot no longer waits for).
        if self._direct is None:
            self.drop_unclaimed_answer()
            try:
                self.line.send(Ask("create_trial_run", (number, None)))
            except OSError:  # the driver is gone: from now on this slot writes
                with _signals_deferred():
                    self.driver_gone()
            else:
                request = self._requested = object()
                return partial(self._claim_run, number, request)
        return partial(self._direct.create_trial_run, number)  # made when it is needed

    def _claim_run(self, number: int, request: object) -> str:
        """The id that the driver answered to ``request``. Marked read only once it is:
        an interruption while waiting leaves it for :meth:`drop_unclaimed_answer`."""
        if self._requested is not request:
            raise RuntimeError(f"trial {number}'s run id was claimed already")
        answer = self._read_answer()
        self._requested = None
        return self._use_answer(answer, "create_trial_run", (number, None))

    def log_trial_inputs(self, run_id: str, params: Mapping[str, Any], config_yaml: str
                         ) -> None:
        self._write("log_trial_inputs", run_id, dict(params), config_yaml)

    def why_not_resume(self, run_id: str, attempts: Sequence[int]) -> str | None:
        return self._ask("why_not_resume", run_id, list(attempts))

    def logged_steps(self, run_id: str) -> dict[str, int]:
        return self._ask("logged_steps", run_id)

    def resume_trial(self, run_id: str, number: int, retry_of: int) -> None:
        self._write("resume_trial", run_id, number, retry_of)

    def log_metrics(self, run_id: str, rows: Sequence[tuple[str, float, int, int]]) -> None:
        self._write("log_metrics", run_id, list(rows))

    def end_trial(self, run_id: str, state: TrialState, *, reason: str | None = None,
                  pruned_at: int | None = None, interrupted: bool = False,
                  only_if_running: bool = False) -> None:
        self._write("end_trial", run_id, state, reason=reason, pruned_at=pruned_at,
                    interrupted=interrupted, only_if_running=only_if_running)

    def end_abandoned(self, trial: FrozenTrial, reason: str) -> None:
        self._write("end_abandoned", trial, reason)

    def log_error(self, run_id: str, text: str) -> None:
        self._write("log_error", run_id, text)

    def bind(self, run_id: str, number: int) -> None:
        self._write("bind", run_id, number)

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self._write("set_tag", run_id, key, value)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self._write("log_text", run_id, text, artifact_file)

    def log_artifact(self, run_id: str, local_path: str) -> None:
        self._write("log_artifact", run_id, local_path)

"""What the driver and its slots say to each other over a slot's pipe.

Driver to slot: ``PREFLIGHT``, then :class:`Go` (or ``STOP``), then ``CONTINUE`` or
``STOP`` in answer to each :class:`Finished` (so that ``max_failures`` stops the sweep
before another trial starts), or ``STOP`` at any time (finish the current trial, then
stop claiming). Slot to driver: :class:`PreflightDone`, then :class:`Started` /
:class:`Finished` per trial, and :class:`Stopped` or :class:`SlotError`. While it trains,
the slot also sends its trials' MLflow writes: :class:`Record` (the driver writes it, then
says :class:`Written`) and :class:`Ask` (the driver writes or reads, and answers with
:class:`Answer`), tuner.launch.records and tuner.launch.recorder. After
:class:`Stopped` the slot waits for the driver's last word, ``EXPORT`` (export the
study's best model, tuner.trial.model; the slot answers :class:`Exported`) or ``DONE``;
then it exits. A ``STOP`` that crossed :class:`Stopped` on the way is not a last word.

Everything here is pickled across processes: it stays free of torch and Lightning, which
the driver never imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from tuner.core.errors import ConfigError
from tuner.core.results import TrialResult


class Channel(Protocol):
    """The slot's end of its pipe (or, under torchrun, a stand-in for it)."""

    def send(self, message: object) -> None: ...
    def poll(self) -> bool: ...
    def recv(self) -> object: ...


PREFLIGHT = "preflight"
STOP = "stop"
CONTINUE = "continue"
EXPORT = "export"
DONE = "done"


@dataclass(frozen=True)
class Go:
    experiment_id: str
    parent_run_id: str
    deadline: float | None  # unix seconds after which no trial starts; None: no limit


@dataclass(frozen=True)
class PreflightDone:
    error: ConfigError | None


@dataclass(frozen=True)
class Started:
    slot: int
    number: int


@dataclass(frozen=True)
class Finished:
    slot: int
    result: TrialResult


@dataclass(frozen=True)
class Stopped:
    slot: int
    reason: str  # "budget", "timeout", "grid exhausted" or "stopped"


@dataclass(frozen=True)
class SlotError:
    slot: int
    text: str  # traceback of an error outside any trial (e.g. the storage went away)


@dataclass(frozen=True)
class Exported:
    slot: int
    said: str | None  # what the export did, in a line; None: nothing to export here


@dataclass(frozen=True)
class Record:
    """One MLflow write of the slot's trials, for the driver to make: the name of a
    :class:`tuner.trial.records.TrialRecords` method and its arguments."""

    op: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Ask(Record):
    """A :class:`Record` whose result the slot waits for (a run's id, a read)."""


@dataclass(frozen=True)
class Answer:
    value: Any
    error: str | None = None  # why the driver could not do it (the slot raises it)


@dataclass(frozen=True)
class Written:
    """Driver to slot: the first ``count`` records the slot sent are written (or wait,
    durably, in the outbox): the slot no longer keeps them."""

    count: int

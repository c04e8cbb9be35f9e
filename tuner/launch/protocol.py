"""What a driver and its slots say to each other over a slot's pipe.

Every message goes one way; nothing a slot sends while it trains waits for an answer.

Driver to slot:
    ``PREFLIGHT``      train one batch of the composed config (slot 0, before the study)
    :class:`Order`     train this trial (tuner.trial.order)
    :class:`Written`   the slot's first ``count`` metric batches are written
    ``IDLE``           no more orders: warm up for the model's export while others train
    ``EXPORT``         export the study's best model (tuner.trial.model), then exit
    ``DONE``           exit

Slot to driver:
    :class:`PreflightDone`   the preflight's verdict
    :class:`Metrics`         a batch of a trial's metric rows, for its run
    :class:`Finished`        how the ordered trial ended (tuner.core.results.TrialResult)
    :class:`Exported`        what the export did
    :class:`Note`            a line for the sweep's output (the study's storage away, say)
    :class:`SlotError`       an error outside any trial; the slot then exits

A slot keeps each batch it sent until the driver says it is written; if its driver
dies, it writes them itself (tuner.launch.orphan). Ctrl-C and SIGTERM are signals, not
messages: a slot that gets one sends what its trial logged and exits with status 130,
and its driver records the trial as interrupted.

Everything here is pickled across processes: it stays free of torch and Lightning, which
the driver never imports.
"""

from __future__ import annotations

from dataclasses import dataclass

from tuner.core.errors import ConfigError
from tuner.core.results import MetricRow, TrialResult
from tuner.trial.order import Order

__all__ = ["DONE", "EXPORT", "IDLE", "PREFLIGHT", "Exported", "Finished", "Metrics", "Note",
           "Order", "PreflightDone", "SlotError", "Written"]

PREFLIGHT = "preflight"
IDLE = "idle"
EXPORT = "export"
DONE = "done"


@dataclass(frozen=True)
class Written:
    count: int  # the slot's metric batches written so far (or waiting, durably, in the outbox)


@dataclass(frozen=True)
class PreflightDone:
    error: ConfigError | None


@dataclass(frozen=True)
class Metrics:
    number: int  # the trial
    rows: list[MetricRow]


@dataclass(frozen=True)
class Finished:
    slot: int
    result: TrialResult


@dataclass(frozen=True)
class Exported:
    slot: int
    said: str | None  # what the export did, in a line; None: nothing to export here


@dataclass(frozen=True)
class Note:
    text: str


@dataclass(frozen=True)
class SlotError:
    slot: int
    text: str  # traceback of an error outside any trial

"""How a round is started: its command line, and what its process reads from the
environment.

The scheduler loop passes the due minute and the job's name to the round it starts;
the round sets its own number while it composes, so that a job's overrides can read
them (``${oc.env:TUNER_ROUND}``, ``${oc.env:TUNER_SCHEDULED_FOR}``). The exported
timetables (tuner.app.schedule.export) run the same command line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

SCHEDULED_FOR_ENV = "TUNER_SCHEDULED_FOR"  # the due minute, e.g. 20261124-0300
ROUND_ENV = "TUNER_ROUND"  # the round's number: overrides may use ${oc.env:TUNER_ROUND}
JOB_ENV = "TUNER_SCHEDULE_JOB"  # the job's name


def round_command(job: str, schedule_path: Path) -> list[str]:
    """One round of ``job``: the interpreter running now, so that a round runs the tuner
    (and the torch) that scheduled or exported it."""
    return [sys.executable, "-m", "tuner", "schedule", "round", job, "--file",
            str(schedule_path.resolve())]


def due_from_env() -> datetime | None:
    """The due minute the scheduler passed (TUNER_SCHEDULED_FOR), if it started us."""
    text = os.environ.get(SCHEDULED_FOR_ENV)
    try:
        return datetime.strptime(text, "%Y%m%d-%H%M").astimezone() if text else None
    except ValueError:
        return None


@contextmanager
def scoped_env(name: str, value: str) -> Iterator[None]:
    """``os.environ[name] = value`` for the block (compose reads ${oc.env:...})."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before

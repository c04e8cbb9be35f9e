"""What the scheduler did: per job, the last due time it handled and how the last run
ended. A small JSON file next to the schedule (``tuner-schedule.state.json``), written
atomically and only by the scheduler loop (one at a time, see :mod:`.runner`), so that
`tuner schedule add` and hand edits of the schedule never race with it.

Per job: ``handled_due`` (the last due minute handled: run, skipped or refused),
``first_seen`` (for jobs written by hand, which have no ``added`` time), ``running`` (a
run in progress) and ``last_run``: ``due``, ``started``, ``ended``, ``status`` (ok,
failed, refused, interrupted or lost), ``exit_code``, ``reason`` and ``log``.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from tuner.app.schedule.files import write_atomically


def state_path(schedule_path: Path) -> Path:
    return schedule_path.with_name(schedule_path.stem + ".state.json")


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text).astimezone() if text else None


class State:
    def __init__(self, path: Path):
        self.path = path
        self.jobs: dict[str, dict[str, Any]] = {}
        if path.exists():
            try:
                self.jobs = dict(json.loads(path.read_text(encoding="utf-8")).get("jobs", {}))
            except (ValueError, AttributeError):
                # The scheduler's own notes, never edited by hand: start them afresh
                # rather than refuse to schedule (at worst a job runs once more).
                self.jobs = {}

    def job(self, name: str) -> dict[str, Any]:
        return self.jobs.setdefault(name, {})

    def save(self) -> None:
        write_atomically(self.path, json.dumps({"jobs": self.jobs}, indent=2) + "\n")

"""A job's rounds, one record each, in ``tuner-schedule-history/<job>.json`` beside the
schedule file: what `tuner schedule history` shows.

Written only by a round, under the job's lock (tuner.study.exclusive), so two writers
never meet; atomically, so a reader sees the file before or after a write. A round
writes its record when it starts (status ``running``) and again when it ends; a record
still ``running`` when the next round starts belongs to a round that was killed, and
that round reaps it (status ``crashed``).

A record: ``round``, ``study``, ``due``, ``started``, ``ended``, ``status`` (running,
done, failed, interrupted or crashed), ``trials`` (COMPLETE, PRUNED and FAIL counts),
``stopped`` (why the sweep ended: ``budget``, or ``timeout`` for the job's wall time),
``warm_started`` (params enqueued from earlier rounds), ``best`` (trial, value, params),
``champion_before`` and ``champion_after`` (model version and value), ``champion_now``
(the champion's value on this round's data), ``decision`` (promoted, kept or none) and
``why``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuner.app.schedule.files import write_atomically

HISTORY_DIR = "tuner-schedule-history"


def history_path(schedule_path: Path, job: str) -> Path:
    return schedule_path.resolve().parent / HISTORY_DIR / f"{job}.json"


class History:
    def __init__(self, path: Path):
        self.path = path
        self.rounds: list[dict[str, Any]] = []
        if path.is_file():
            try:
                self.rounds = list(json.loads(path.read_text(encoding="utf-8"))["rounds"])
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{path} is not a round history ({error}); move it away "
                                 "to start the job's history afresh") from error

    def next_round(self) -> int:
        return max((r["round"] for r in self.rounds), default=0) + 1

    def record(self, entry: dict[str, Any]) -> None:
        """Add or replace (same ``round``) a round's record, and save the file."""
        self.rounds = [r for r in self.rounds if r["round"] != entry["round"]] + [entry]
        self.rounds.sort(key=lambda r: r["round"])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path, json.dumps({"rounds": self.rounds}, indent=1,
                                               default=str) + "\n")

    def unfinished(self) -> list[dict[str, Any]]:
        return [r for r in self.rounds if r["status"] == "running"]

    def finished_studies(self) -> list[str]:
        """The studies of earlier rounds that trained something, oldest first."""
        return [r["study"] for r in self.rounds if r["status"] != "running"]

"""The schedule's files: written atomically, so that a reader (the scheduler loop, a
user's editor, `tuner schedule list`) sees the old file or the new one, never half of
one; and the lock that keeps one scheduler per schedule file."""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path
from typing import IO

from tuner.config.locate import display_path


def write_atomically(path: Path, text: str) -> None:
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class SchedulerBusy(Exception):
    """Another `tuner schedule run` holds this schedule's lock."""


class ScheduleLock:
    """An exclusive, non-blocking ``flock`` on ``<schedule>.lock`` beside the schedule."""

    def __init__(self, path: Path, schedule_path: Path):
        self.path, self.schedule_path = path, schedule_path
        self.handle: IO[str] | None = None

    def __enter__(self) -> ScheduleLock:
        self.handle = self.path.open("a+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            self.handle.close()
            raise SchedulerBusy(f"another `tuner schedule run` is running the jobs of "
                                f"{self.schedule_path.name} (it holds "
                                f"{display_path(self.path)}); nothing was run") from error
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.handle is not None
        self.handle.close()

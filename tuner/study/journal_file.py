"""The study's journal file, guarded against a record cut short.

Optuna's ``JournalFileBackend`` (5.1.0) writes each record as one JSON line. When the
last line is cut (power lost mid-write, a full disk), its reader skips the broken line,
but its writer appends the next record right after it, with no newline between: the
first record written after the cut is glued to it and lost, and the second makes the
whole file unreadable (``JSONDecodeError`` on every later command). A rerun writes
records as it opens the study, so one crash loses the study for good. tuner's backend
(this one) is Optuna's, with two guards, both under the journal's own lock (the lock
Optuna's writers take, so no writer is mid-record meanwhile):

- when it is opened, a torn or garbage tail is cut back to the last complete record;
  the cut bytes are kept beside the journal (``optuna.journal.torn-<time>``) and one
  line on stderr says so;
- when an append fails (a full disk, say), what it wrote of the records is cut off
  before the lock is let go, so that no other writer glues its record to them.

Optuna's own locks (a symlink or an exclusive-create file beside the journal) outlive a
holder that is killed (SIGKILL, OOM, power) while it writes or repairs: every later
command then waits their 30 s grace period, printing three warnings, before it breaks
the lock (and breaks it just as much when a live holder is slow). tuner's journal lock
is an exclusive ``flock`` on ``<journal>.flock`` (:class:`FlockLock`), which the kernel
lets go with its holder, as tuner's claim lock beside the same file already is.

Minimal reproduction, Optuna alone: create a study on a journal file, run three trials,
cut the file's last line in half, load the study and set two user attributes, load it
again (tests/test_journal_file.py runs it against Optuna's own backend). tuner keeps
this guard until Optuna's release fixes it.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from optuna.storages.journal import (
    JournalFileBackend,
    JournalFileOpenLock,
    JournalFileSymlinkLock,
)

FLOCK_SUFFIX = ".flock"


class FlockLock:
    """An exclusive ``flock`` on ``<journal>.flock``, for Optuna's journal backend (it
    calls acquire and release): let go by the kernel when its holder dies, so a killed
    writer never leaves it held. Each acquisition opens the file anew (a lock per open
    file description), so threads of one process exclude each other too."""

    def __init__(self, journal_path: str):
        self.path = f"{journal_path}{FLOCK_SUFFIX}"
        self._held = threading.local()

    def acquire(self) -> bool:
        handle = open(self.path, "a")  # noqa: SIM115 (held until release)
        fcntl.flock(handle, fcntl.LOCK_EX)
        self._held.handle = handle
        return True

    def release(self) -> None:
        handle = self._held.handle
        self._held.handle = None
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}  # a lock held here is not held by a copy

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self._held = threading.local()


Lock = FlockLock | JournalFileOpenLock | JournalFileSymlinkLock

TORN_SUFFIX = ".torn-"
_CHUNK = 1 << 16  # bytes read from the end at a time while looking for the last record


class TornJournal(Exception):
    """A journal with no complete record in it: not cut back (it may not be a journal)."""


class GuardedJournalFile(JournalFileBackend):
    """``optuna.storages.journal.JournalFileBackend`` with the guards above; the same
    arguments."""

    def __init__(self, file_path: str, lock_obj: Lock | None = None):
        self.path = Path(file_path)
        self.lock = lock_obj or FlockLock(str(self.path))
        super().__init__(str(self.path), self.lock)
        with _held(self.lock):
            repair(self.path)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        text = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
        with _held(self.lock):
            size = self.path.stat().st_size
            try:
                with self.path.open("ab") as out:
                    out.write(text.encode("utf-8"))
                    out.flush()
                    os.fsync(out.fileno())
            except BaseException:
                _truncate(self.path, size)  # no half record is left for another to glue to
                raise


def repair(path: Path) -> Path | None:
    """Cut the journal at ``path`` back to its last complete record (the caller holds
    the journal's lock). Returns the file that keeps the cut bytes, or None when the
    journal ended whole."""
    if not path.is_file():
        return None
    size = path.stat().st_size
    whole = complete_length(path, size)
    if whole == size:
        return None
    with path.open("rb") as data:
        data.seek(whole)
        tail = data.read()
    kept = path.with_name(f"{path.name}{TORN_SUFFIX}{time.strftime('%Y%m%dT%H%M%S')}")
    kept.write_bytes(tail)
    _truncate(path, whole)
    print(f"tuner: {path} ended in {len(tail)} bytes of a record cut short (a crash or a "
          f"full disk); cut back to its last complete record, the bytes kept in {kept}",
          file=sys.stderr, flush=True)
    return kept


def complete_length(path: Path, size: int) -> int:
    """The length of the journal up to the end of its last complete record: a line that
    ends with a newline and holds a JSON object. Raises TornJournal when there is none
    in a file that is not empty."""
    if size == 0:
        return 0
    with path.open("rb") as data:
        span = min(size, _CHUNK)
        while True:
            data.seek(size - span)
            block = data.read(span)
            end = _last_record_end(block, whole_file=span == size)
            if end is not None:
                return size - span + end
            if span == size:
                raise TornJournal(f"{path} holds no complete record of a study journal")
            span = min(size, span * 2)


def _last_record_end(block: bytes, whole_file: bool) -> int | None:
    """Within ``block`` (the file's last bytes), the end of the last complete record;
    None when it is not in the block."""
    end = block.rfind(b"\n")
    while end >= 0:
        start = block.rfind(b"\n", 0, end) + 1
        if start == 0 and not whole_file:
            return None  # the line may begin before the block: read more
        if _is_record(block[start:end]):
            return end + 1
        end = start - 1
    return None


def _is_record(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _truncate(path: Path, size: int) -> None:
    with path.open("r+b") as data:
        data.truncate(size)
        data.flush()
        os.fsync(data.fileno())


class _held:
    """A journal file lock held for a block (Optuna's locks have acquire and release)."""

    def __init__(self, lock: Lock):
        self.lock = lock

    def __enter__(self) -> None:
        self.lock.acquire()

    def __exit__(self, *exc) -> None:
        self.lock.release()

"""The MLflow outbox: records the tracking server could not take yet, kept to replay.

One folder per study under ``tracking.outbox_dir`` (default ``run_dir/mlflow-outbox``):

    <study>/<trial number>.jsonl   one trial's MLflow operations, in the order it made them
    <study>/parent.jsonl           the study's parent run (its end, the end-of-sweep records)
    <study>/files/                 copies of artifacts and models' weights that records name

Each line is one JSON record for one operation. A record is appended under an exclusive
lock on its file and fsync'd before the writer goes on, so a crash loses at most the line
being written (a torn last line is skipped when read). Strings pass through
:func:`tuner.core.masking.mask` first, as everything else tuner writes.

Replaying (:mod:`tuner.tracking.replay`) writes a record to the server, then appends
``{"done": <record id>}`` to the same file, so an interrupted replay goes on after the
last record it wrote; a file whose records are all done is removed. A replayer holds the
file's lock for the whole file and skips files that another process holds, so one
process replays a file at a time; writers wait for it (the lock follows the file's inode,
so a writer that waited on a file removed meanwhile starts a new one).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from tuner.core.masking import mask

PARENT = "parent"  # the key of the parent run's file
SUFFIX = ".jsonl"
FILES = "files"


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
    return value


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def trial_of(key: str) -> int | None:
    """The trial number a file key stands for, or None (the parent run, or a run whose
    trial this process did not know)."""
    return int(key) if key.isdigit() else None


class Outbox:
    def __init__(self, root: Path, study_name: str):
        self.dir = Path(root) / study_name

    def path(self, key: str) -> Path:
        return self.dir / f"{key}{SUFFIX}"

    def has(self, key: str) -> bool:
        """Whether ``key`` has records waiting: new ones must queue behind them."""
        return self.path(key).exists()

    def pending_keys(self) -> list[str]:
        """Keys with a file: trials by number, then other runs, the parent run last."""
        if not self.dir.is_dir():
            return []
        keys = [p.name[:-len(SUFFIX)] for p in self.dir.iterdir() if p.name.endswith(SUFFIX)]
        return sorted(keys, key=lambda k: (k == PARENT, trial_of(k) is None,
                                           trial_of(k) or 0, k))

    def waiting(self, key: str) -> list[dict[str, Any]]:
        """``key``'s waiting records, read without the lock (for messages and counts)."""
        try:
            return _pending(self.path(key).read_bytes())
        except FileNotFoundError:
            return []

    def count(self) -> int:
        """Records waiting in every file."""
        return sum(len(self.waiting(key)) for key in self.pending_keys())

    # -- writing -----------------------------------------------------------------------

    def append(self, key: str, record: dict[str, Any]) -> None:
        """Add one record to ``key``'s file, durably, after those already there."""
        record = {"id": uuid.uuid4().hex[:16], "at": round(time.time(), 3), **_masked(record)}
        line = json.dumps(record).encode() + b"\n"
        with self._locked(self.path(key), create=True) as handle:
            handle.seek(0, os.SEEK_END)
            new = handle.tell() == 0
            if not new:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":  # a writer died mid-line: end that line
                    line = b"\n" + line
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        if new:
            _fsync_dir(self.dir)

    def keep_file(self, source: Path | str) -> str:
        """Copy a file that a record names (it may be gone when the record is replayed);
        returns its path relative to the study's folder."""
        source = Path(source)
        target = self._new_file(source.name)
        shutil.copyfile(source, target)
        with target.open("rb") as handle:
            os.fsync(handle.fileno())
        return str(target.relative_to(self.dir))

    def new_file(self, name: str) -> tuple[Path, str]:
        """A fresh path under ``files/`` for the caller to write (then fsync), and its
        path relative to the study's folder."""
        target = self._new_file(name)
        return target, str(target.relative_to(self.dir))

    def _new_file(self, name: str) -> Path:
        folder = self.dir / FILES / uuid.uuid4().hex[:16]
        folder.mkdir(parents=True)
        return folder / name

    def file(self, relative: str) -> Path:
        return self.dir / relative

    def discard(self, key: str) -> None:
        """Drop ``key``'s waiting records (superseded: see Tracker.open)."""
        with self._locked(self.path(key), create=False) as handle:
            if handle is not None:
                for record in _pending(_read(handle)):
                    self._remove_files(record)
                self.path(key).unlink()

    def tidy(self) -> None:
        """Remove the study's folder once nothing waits in it (only empty folders go, so
        a writer that starts meanwhile loses nothing: it creates them again)."""
        for folder in (self.dir / FILES, self.dir):
            try:
                folder.rmdir()
            except OSError:  # not empty, or not there
                return

    # -- replaying ---------------------------------------------------------------------

    @contextmanager
    def replaying(self, key: str) -> Iterator[Replaying | None]:
        """Hold ``key``'s file for replay; None when another process holds it or it is
        gone."""
        with self._locked(self.path(key), create=False, wait=False) as handle:
            yield None if handle is None else Replaying(self, key, handle)

    def _remove_files(self, record: dict[str, Any]) -> None:
        for field in ("file", "weights"):
            if record.get(field):
                shutil.rmtree(self.file(record[field]).parent, ignore_errors=True)

    @contextmanager
    def _locked(self, path: Path, *, create: bool, wait: bool = True
                ) -> Iterator[IO[bytes] | None]:
        while True:
            try:
                handle = path.open("a+b") if create else path.open("r+b")
            except FileNotFoundError:
                if not create:
                    yield None
                    return
                path.parent.mkdir(parents=True, exist_ok=True)  # new, or just tidied away
                continue
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                handle.close()
                yield None
                return
            try:
                current = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
            except FileNotFoundError:
                current = False
            if current:
                break
            handle.close()  # removed (or replaced) while we waited: take the live file
        try:
            yield handle
        finally:
            handle.close()  # releases the lock


class Replaying:
    """One file held for replay: its waiting records, and marking them written."""

    def __init__(self, outbox: Outbox, key: str, handle: IO[bytes]):
        self.outbox, self.key, self._handle = outbox, key, handle

    def pending(self) -> list[dict[str, Any]]:
        return _pending(_read(self._handle))

    def done(self, record: dict[str, Any]) -> None:
        handle = self._handle
        handle.seek(0, os.SEEK_END)
        handle.write(json.dumps({"done": record["id"]}).encode() + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
        self.outbox._remove_files(record)

    def remove(self) -> None:
        """Called when every record is done: the file goes (under the lock)."""
        self.outbox.path(self.key).unlink()
        _fsync_dir(self.outbox.dir)


def _read(handle: IO[bytes]) -> bytes:
    handle.seek(0)
    return handle.read()


def _pending(data: bytes) -> list[dict[str, Any]]:
    records, done = [], set()
    for line in data.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line torn by a crash: its writer never went on
        if "done" in entry:
            done.add(entry["done"])
        elif "op" in entry:
            records.append(entry)
    return [r for r in records if r["id"] not in done]

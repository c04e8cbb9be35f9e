"""Creating the local MLflow store (an SQLite file) so that a kill cannot half-make it.

MLflow creates a new SQLite store by running its schema migrations in place, which
takes a second or more. A sweep killed during them (SIGKILL, the OOM killer) leaves a
file with some tables and no record of which: every later command fails on it ("table
... already exists"). And two processes that start together (a sweep and its workers)
would both migrate the same new file.

So a missing store is built under a private name and then linked into place, which
succeeds for exactly one process; the others, and any later command, open the finished
file. A kill leaves at most a stray private file, removed by the next creator.

The migrations take over a second, so a sweep starts them early (``prebuild``) in a
temporary folder outside the project, while its slots import torch: nothing is written
where the user looks before the preflight passes, and then the finished file is copied
into place under the private name and linked as above.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

SQLITE = "sqlite:///"
PARTIAL = ".creating-"  # <store>.creating-<pid>: a store being built by that process

_prebuilt: dict[str, _Prebuilt] = {}  # tracking URI -> a store migrated ahead of time


class _Prebuilt:
    """An empty store migrated in a temporary folder, ready to be copied into place."""

    def __init__(self, artifact_root: Path) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="tuner-store-")  # gone at exit
        self.file = Path(self._folder.name) / "store.db"
        self._artifact_root = artifact_root
        self._done = threading.Event()
        self._ok = False

    def build(self) -> None:
        try:
            _migrate(self.file, self._artifact_root)
            self._ok = True
        finally:
            self._done.set()

    def take(self) -> Path | None:
        """The finished file, waiting for the build if it still runs; None if it failed
        (the caller then builds the store itself, and meets the error if there is one)."""
        self._done.wait()
        return self.file if self._ok else None

    def discard(self) -> None:
        if self._done.is_set():  # else the build still runs: the folder goes at exit
            self._folder.cleanup()


def prebuilder(tracking_uri: str) -> Callable[[], None] | None:
    """For an SQLite store that does not exist yet, a function that migrates one ahead
    of time, for a background thread to run: ``ensure_local_store`` then copies it into
    place (waiting for it if it still runs) instead of migrating. It writes nothing
    outside a temporary folder. None when there is nothing to build."""
    if not tracking_uri.startswith(SQLITE) or tracking_uri in _prebuilt:
        return None
    path = Path(tracking_uri[len(SQLITE):])
    if path.exists():
        return None
    prebuilt = _prebuilt[tracking_uri] = _Prebuilt(path.parent / "mlartifacts")
    return prebuilt.build


def ensure_local_store(tracking_uri: str) -> None:
    """Make sure the SQLite store of ``tracking_uri`` exists, fully migrated; no-op for
    other stores (a server migrates its own)."""
    if not tracking_uri.startswith(SQLITE):
        return
    path = Path(tracking_uri[len(SQLITE):])
    prebuilt = _prebuilt.pop(tracking_uri, None)
    try:
        if not path.exists():
            _create(path, prebuilt.take() if prebuilt is not None else None)
    finally:
        if prebuilt is not None:
            prebuilt.discard()


def _create(path: Path, ready: Path | None) -> None:
    """Build the store under a private name (from ``ready``, a store migrated ahead of
    time, if there is one) and link it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(path)
    partial = path.with_name(f"{path.name}{PARTIAL}{os.getpid()}")
    partial.unlink(missing_ok=True)
    try:
        if ready is not None:
            shutil.copyfile(ready, partial)
        else:
            _migrate(partial, path.parent / "mlartifacts")
        os.link(partial, path)  # fails if another process got there first: use theirs
    except FileExistsError:
        pass
    finally:
        partial.unlink(missing_ok=True)


def _migrate(file: Path, artifact_root: Path) -> None:
    """Create an empty, fully migrated MLflow store in ``file``."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    # The default artifact root only names experiment 0, which tuner never uses.
    store = SqlAlchemyStore(f"{SQLITE}{file}", str(artifact_root))
    store.engine.dispose()


def _remove_abandoned(path: Path) -> None:
    """Delete private files of creators that no longer run (killed mid-migration)."""
    for stray in path.parent.glob(f"{path.name}{PARTIAL}*"):
        # <store>.creating-<pid>, or SQLite's <store>.creating-<pid>-journal beside it
        pid = stray.name[len(path.name) + len(PARTIAL):].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                stray.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

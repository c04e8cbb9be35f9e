"""Creating the local MLflow store (an SQLite file) so that a kill cannot half-make it.

MLflow creates a new SQLite store by running its schema migrations in place, which
takes a second or more. A sweep killed during them (SIGKILL, the OOM killer) leaves a
file with some tables and no record of which: every later command fails on it ("table
... already exists"). And two processes that start together (a sweep and its workers)
would both migrate the same new file.

So a missing store is built under a private name and then linked into place, which
succeeds for exactly one process; the others, and any later command, open the finished
file. A kill leaves at most a stray private file, removed by the next creator.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

SQLITE = "sqlite:///"
PARTIAL = ".creating-"  # <store>.creating-<pid>: a store being built by that process


def ensure_local_store(tracking_uri: str) -> None:
    """Make sure the SQLite store of ``tracking_uri`` exists, fully migrated; no-op for
    other stores (a server migrates its own)."""
    if not tracking_uri.startswith(SQLITE):
        return
    path = Path(tracking_uri[len(SQLITE):])
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(path)
    partial = path.with_name(f"{path.name}{PARTIAL}{os.getpid()}")
    partial.unlink(missing_ok=True)
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    # The default artifact root only names experiment 0, which tuner never uses.
    store = SqlAlchemyStore(f"{SQLITE}{partial}", str(path.parent / "mlartifacts"))
    store.engine.dispose()
    try:
        os.link(partial, path)  # fails if another process got there first: use theirs
    except FileExistsError:
        pass
    finally:
        partial.unlink(missing_ok=True)


def _remove_abandoned(path: Path) -> None:
    """Delete private files of creators that no longer run (killed mid-migration)."""
    for stray in path.parent.glob(f"{path.name}{PARTIAL}*"):
        pid = stray.name.rsplit("-", 1)[-1]
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

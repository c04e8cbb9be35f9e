"""Creating the local MLflow store (an SQLite file) so that a kill cannot half-make it.

MLflow creates a new SQLite store by running its schema migrations in place, which
takes about a second. A sweep killed during them (SIGKILL, the OOM killer) leaves a
file with some tables and no record of which: every later command fails on it ("table
... already exists"). And two processes that start together (a sweep and its workers)
would both migrate the same new file.

So a missing store is built under a private name and then linked into place, which
succeeds for exactly one process; the others, and any later command, open the finished
file. A kill leaves at most a stray private file, removed by the next creator.

The migrations run once per MLflow version on a machine: the migrated empty store is
kept as a template in the user's cache (``~/.cache/tuner``, or ``$XDG_CACHE_HOME``), and
a new store is a copy of it (a few milliseconds) with its default experiment's artifact
folder set to where MLflow would have put it. A sweep makes sure the template exists
(``prebuilder``) in the background while its slots start; where the cache cannot be
written, each new store is migrated in place, as MLflow does.
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

CACHE_ENV = "XDG_CACHE_HOME"


def template_path() -> Path:
    """Where this MLflow version's migrated empty store is kept."""
    import mlflow

    cache = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache") / "tuner"
    return cache / f"mlflow-{mlflow.__version__}-empty-store.db"


def prebuilder(tracking_uri: str) -> Callable[[], None] | None:
    """For an SQLite store that does not exist yet, a function that makes sure the
    template exists, for a background thread to run (the first time on a machine, it
    migrates one; it writes nothing outside the cache). None when there is nothing to
    build."""
    if not tracking_uri.startswith(SQLITE) or Path(tracking_uri[len(SQLITE):]).exists():
        return None
    return lambda: _template()


def ensure_local_store(tracking_uri: str) -> None:
    """Make sure the SQLite store of ``tracking_uri`` exists, fully migrated; no-op for
    other stores (a server migrates its own)."""
    if not tracking_uri.startswith(SQLITE):
        return
    path = Path(tracking_uri[len(SQLITE):])
    if not path.exists():
        _create(path, _template())


def _template() -> Path | None:
    """The template, migrated now if it is not there yet; None where the cache cannot
    be written."""
    with _template_lock:
        path = template_path()
        if path.is_file():
            return path
        partial = path.with_name(f"{path.name}{PARTIAL}{os.getpid()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial.unlink(missing_ok=True)
            with tempfile.TemporaryDirectory(prefix="tuner-store-") as artifacts:
                _migrate(partial, Path(artifacts))
            os.replace(partial, path)  # whole or not at all, whoever finishes first
        except OSError:
            return None
        finally:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
        return path


_template_lock = threading.Lock()


def _create(path: Path, template: Path | None) -> None:
    """Build the store under a private name (a copy of the template, if there is one)
    and link it into place."""
    from tuner.core.upstream import set_mlflow_default_artifact_folder

    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(path)
    partial = path.with_name(f"{path.name}{PARTIAL}{os.getpid()}")
    partial.unlink(missing_ok=True)
    artifacts = path.parent / "mlartifacts"
    try:
        if template is not None:
            shutil.copyfile(template, partial)
            set_mlflow_default_artifact_folder(partial, artifacts / "0")
        else:
            _migrate(partial, artifacts)
        os.link(partial, path)  # fails if another process got there first: use theirs
    except FileExistsError:
        pass
    finally:
        partial.unlink(missing_ok=True)


def _migrate(file: Path, artifact_root: Path) -> None:
    """Create an empty, fully migrated MLflow store in ``file``."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

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

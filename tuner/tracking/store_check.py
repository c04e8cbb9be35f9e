"""A local MLflow store that is damaged is refused before anything touches the study.

A crash or a disk error can leave ``mlflow.db`` cut short or with pages overwritten.
MLflow then fails with a raw SQLAlchemy traceback, or, worse, goes on over a malformed
file: a rerun, ``tuner best`` and ``tuner report`` all succeed while what they write and
read may be lost. SQLite's own ``quick_check`` finds both; it reads every page once
(fractions of a second for a store of thousands of runs), and it runs where a command
starts, before the study is touched.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from tuner.core.errors import ConfigError, Problem, first_line
from tuner.tracking.local_store import SQLITE


def check_local_store(tracking_uri: str, where: str) -> None:
    """Raise ConfigError when the SQLite store at ``tracking_uri`` exists and fails
    SQLite's ``quick_check``; a missing store (made later) and a server pass."""
    if not tracking_uri.startswith(SQLITE):
        return
    path = Path(tracking_uri[len(SQLITE):])
    if not path.is_file():
        return
    damage = quick_check(path)
    if damage is None:
        return
    raise ConfigError(Problem(
        where, "tracking.tracking_uri",
        f"the MLflow store {path} is damaged ({damage}); tuner will not write into it",
        f"restore {path.name} from a backup, or move it aside with its -wal and -shm "
        f"files (mkdir {path.parent}/damaged && mv {path}* {path.parent}/damaged/): the "
        "next sweep then starts a new store. The study itself (its trials, params and "
        "values) is in the study's storage, not in this file: `tuner best` and `tuner "
        "report` read it from there"))


def quick_check(path: Path) -> str | None:
    """What SQLite's ``quick_check`` finds wrong with the database at ``path``, in a
    line; None when it is whole."""
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as db:
            rows = db.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as error:
        return first_line(str(error))
    found = [row[0] for row in rows if row and row[0] != "ok"]
    return "; ".join(found[:3])[:300] if found else None

"""One holder at a time, across processes and machines, on the study's own storage.

Used for rounds of a scheduled job (tuner.app.schedule.rounds): two executions of one
job must never overlap, also when cron, a systemd timer or a Kubernetes CronJob start
them on different machines. The lock lives where the studies live, so every machine
that can run the job can see it:

- journal file or SQLite storage: an exclusive ``flock`` on ``<storage file>.<name>.lock``;
- PostgreSQL: a session-level advisory lock, held on a connection of its own for as
  long as the holder runs, and released by the server if the holder dies.

Neither waits: a second holder is refused at once (:class:`AlreadyRunning`).
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig

from tuner.core.errors import AlreadyRunning
from tuner.study.storage import advisory_key, engine_kwargs, storage_file


@contextmanager
def exclusive(storage_cfg: DictConfig, name: str, holder: str) -> Iterator[None]:
    """Hold the lock ``name`` while the block runs; raise AlreadyRunning, saying that
    ``holder`` (e.g. "a round of job nightly") runs elsewhere, when it is held.

    Storages with neither a file nor PostgreSQL behind them (MySQL, say) have no such
    lock: the block runs unguarded."""
    path = storage_file(storage_cfg)
    url = str(storage_cfg.get("url") or "")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _file(Path(f"{path}.{name}.lock"), holder):
            yield
    elif url.startswith("postgresql"):
        with _advisory(storage_cfg, name, holder):
            yield
    else:
        yield


@contextmanager
def _file(path: Path, holder: str) -> Iterator[None]:
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunning(f"{holder} is already running (it holds {path})") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _advisory(storage_cfg: DictConfig, name: str, holder: str) -> Iterator[None]:
    import sqlalchemy
    from sqlalchemy import text

    key = advisory_key("exclusive", name)
    engine = sqlalchemy.create_engine(str(storage_cfg.url),
                                      **engine_kwargs(storage_cfg.get("engine_kwargs") or {}))
    with engine.connect() as connection:
        taken = connection.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                   {"key": key}).scalar()
        connection.commit()
        if not taken:
            raise AlreadyRunning(f"{holder} is already running (PostgreSQL advisory lock "
                                 f"{key} is held)")
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            connection.commit()
    engine.dispose()

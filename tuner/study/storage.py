"""Where a study lives: Optuna's storages, opened once the database answers.

Any storage Optuna has works (``storage`` group, ``_target_``). What tuner adds: a
database that does not answer is refused before anything is written
(:func:`check_storage`); processes that open an empty PostgreSQL database at once take
turns creating Optuna's tables; a journal file is guarded against a torn last record
(tuner.study.journal_file); and every storage waits out an outage of up to
``storage.outage_s`` seconds (tuner.study.outage) (:func:`open_storage`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig
from optuna.storages import BaseStorage

from tuner.core.errors import ConfigError, Problem, first_line
from tuner.core.masking import mask
from tuner.core.quiet import quiet_optuna

SCHEMA_LOCK_KEY = 0x7475_6E65_7200  # "tuner" in ASCII: one advisory lock per database
SQLITE_URL = "sqlite:///"  # an SQLite storage's URL: this, then the file's path


def check_storage(storage_cfg, where: str) -> None:
    """Raise ConfigError unless the database server behind an RDB storage answers.

    Runs before anything is written: without it, a sweep pointed at a database that is
    down would start its slots, run the preflight and create the run dir, then fail with
    a traceback. File storages (the journal, SQLite) need no server and pass at once."""
    url = storage_cfg.get("url") if hasattr(storage_cfg, "get") else None
    if url is None or str(url).startswith("sqlite"):
        return
    import sqlalchemy

    engine = None
    try:
        engine = sqlalchemy.create_engine(str(url), **engine_kwargs(
            storage_cfg.get("engine_kwargs") or {}))
        with engine.connect():
            pass
    except Exception as error:  # bad URL, missing driver, refused, auth: all the user's
        cause = getattr(error, "orig", None) or error
        raise ConfigError(Problem(
            where, "storage.url", f"cannot connect to the study's database at {mask(str(url))}: "
            f"{mask(first_line(str(cause)))}",
            "start the database server, or point storage.url at one that runs (for "
            "storage=postgres: PGHOST, PGPORT, PGUSER, PGDATABASE; the password comes from "
            "PGPASSWORD or ~/.pgpass)")) from None
    finally:
        if engine is not None:
            engine.dispose()


def engine_kwargs(given) -> dict:
    """A storage config's ``engine_kwargs`` as SQLAlchemy's ``create_engine`` takes them."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(given) if OmegaConf.is_config(given) else dict(given)


OPTUNA_JOURNAL_FILE = "optuna.storages.journal.JournalFileBackend"
GUARDED_JOURNAL_FILE = "tuner.study.journal_file.GuardedJournalFile"


# tuner's settings in a storage config, not arguments of the storage's class
OUTAGE_KEY, DEFAULT_OUTAGE_S = "outage_s", 60.0


def outage_seconds(storage_cfg) -> float:
    """How long the storage may be away before a sweep stops (``storage.outage_s``)."""
    value = storage_cfg.get(OUTAGE_KEY) if hasattr(storage_cfg, "get") else None
    return DEFAULT_OUTAGE_S if value is None else float(value)


def open_storage(storage_cfg) -> BaseStorage:
    """The storage the config names, waiting out outages (tuner.study.outage). A journal
    file is always tuner's guarded one (tuner.study.journal_file), also where a config
    names Optuna's backend: a torn last record would otherwise lose the study."""
    from tuner.study.outage import patient

    quiet_optuna()
    waiting = patience(outage_seconds(storage_cfg))
    waiting.what = f"the study's storage ({describe_storage(storage_cfg)})"
    return patient(_instantiate(storage_cfg), waiting)


def describe_storage(storage_cfg) -> str:
    """The storage in a few words: its journal file, or its database URL (masked)."""
    journal = journal_path(storage_cfg)
    if journal is not None:
        return str(journal)
    url = storage_cfg.get("url") if hasattr(storage_cfg, "get") else None
    return mask(str(url)) if url is not None else str(storage_cfg.get("_target_", "?"))


def _instantiate(storage_cfg) -> BaseStorage:
    from omegaconf import OmegaConf

    cfg = (OmegaConf.to_container(storage_cfg, resolve=True) if OmegaConf.is_config(storage_cfg)
           else dict(storage_cfg))
    cfg.pop(OUTAGE_KEY, None)
    url = cfg.get("url")
    if url is not None and str(url).startswith("postgresql"):
        with _schema_lock(str(url), cfg.get("engine_kwargs") or {}):
            return instantiate(cfg)
    journal = journal_path(storage_cfg)
    if journal is not None and str(cfg["log_storage"].get("_target_")) in (
            OPTUNA_JOURNAL_FILE, GUARDED_JOURNAL_FILE):
        return _open_journal(cfg, journal)
    return instantiate(cfg)


_patience = None


def patience(outage_s: float):
    """This process's :class:`tuner.study.outage.Patience`, shared by its storages (the
    driver tells the outage's start and end through it)."""
    global _patience
    from tuner.study.outage import Patience

    if _patience is None:
        _patience = Patience(outage_s)
    _patience.outage_s = outage_s
    return _patience


def _open_journal(cfg: dict, journal: Path) -> BaseStorage:
    from tuner.study.journal_file import TornJournal

    cfg["log_storage"]["_target_"] = GUARDED_JOURNAL_FILE
    try:
        return instantiate(cfg)
    except Exception as error:
        cause = error.__cause__ or error
        if isinstance(cause, TornJournal):
            raise ConfigError(Problem(
                str(journal), "storage", str(cause),
                "it is no study journal, or it is damaged beyond its last record: move "
                "it aside (a new sweep then starts a new study) or point storage at the "
                "right file")) from error
        raise


@contextmanager
def _schema_lock(url: str, given_kwargs) -> Iterator[None]:
    """Serialise RDBStorage's first connection, which creates Optuna's tables: processes
    that start at once on an empty PostgreSQL database otherwise race on CREATE TABLE
    and all but one fail with a unique violation."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, **engine_kwargs(given_kwargs))
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"),
                               {"key": SCHEMA_LOCK_KEY})
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"),
                                   {"key": SCHEMA_LOCK_KEY})
                connection.commit()
    finally:
        engine.dispose()


def journal_path(storage_cfg) -> Path | None:
    """The journal file behind a journal-file storage config, if that is what it is."""
    log_storage = storage_cfg.get("log_storage") if hasattr(storage_cfg, "get") else None
    if log_storage is not None and "file_path" in log_storage:
        return Path(log_storage["file_path"])
    return None


def storage_file(storage_cfg: DictConfig) -> Path | None:
    """The file behind a journal-file or SQLite storage config; None for a server."""
    journal = journal_path(storage_cfg)
    if journal is not None:
        return journal
    url = str(storage_cfg.get("url") or "")
    return Path(url.removeprefix(SQLITE_URL)) if url.startswith(SQLITE_URL) else None


def advisory_key(purpose: str, name: str) -> int:
    """A PostgreSQL advisory lock key for ``name`` (64 bits of a hash)."""
    digest = hashlib.sha1(f"tuner-{purpose}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def find_study_id(storage: BaseStorage, name: str) -> int | None:
    try:
        return storage.get_study_id_from_name(name)
    except KeyError:
        return None

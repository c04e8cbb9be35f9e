"""A study's storage that waits out an outage, within bounds.

Routine maintenance restarts a database (``pg_ctl restart`` takes about a second), a
network blips, a disk fills and is cleared: a call to the study's storage that fails for
such a reason is tried again, with backoff, for up to ``storage.outage_s`` seconds
(default 60), so a sweep rides through it. The first failure is said once
(:class:`Patience` ``on_away``: the sweep's progress shows the storage away and since
when), and so is the first answer after it (``on_back``). Past the bound the call
raises :class:`~tuner.core.errors.StorageUnavailable`, and so does every later call that
fails, at once, until one is answered: the sweep stops cleanly (every slot stopped,
each run ended, exit code 75) and the same command run again finishes the study.

What counts as an outage: a database connection lost or refused (SQLAlchemy's and
psycopg2's ``OperationalError`` and ``InterfaceError``, also inside Optuna's
``StorageInternalError``), and a file system that is full or failing (``ENOSPC``,
``EDQUOT``, ``EIO``). Anything else (a finished trial written to, a missing study) is
no outage and raises at once.

A write whose answer was lost may have been made: the retry of a trial's end that finds
the trial already ended as asked returns as if it had made it. A retried ``ask`` may
leave one extra trial without a lease; the next claim reaps it ("it never got a lease").
The journal file's backend leaves no half record behind a failed append
(tuner.study.journal_file), so its retries write each record once.
"""

from __future__ import annotations

import contextlib
import errno
import threading
import time
from collections.abc import Callable
from typing import Any

from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage

from tuner.core.errors import StorageUnavailable, first_line
from tuner.core.upstream import CACHED_STORAGE_CALLS

OUTAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO}
FIRST_WAIT_S, LONGEST_WAIT_S = 0.25, 5.0
# Every public method of Optuna's storages (what Optuna's Study and Trial call), and the
# private ones its cache of an RDB storage calls (tuner.core.upstream).
STORAGE_METHODS = (*(name for name in dir(BaseStorage)
                     if not name.startswith("_") and callable(getattr(BaseStorage, name))),
                   *CACHED_STORAGE_CALLS)


def is_outage(error: BaseException) -> bool:
    """Whether ``error`` (or one it was raised from) is a lost connection or a failing
    disk, which may pass."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, StorageUnavailable):
            return False
        if isinstance(error, OSError) and error.errno in OUTAGE_ERRNOS:
            return True
        if type(error).__name__ in ("OperationalError", "InterfaceError",
                                    "PendingRollbackError") and \
                type(error).__module__.split(".")[0] in ("sqlalchemy", "psycopg2", "sqlite3"):
            return True
        if getattr(error, "connection_invalidated", False):
            return True
        error = error.__cause__ or error.__context__
    return False


class Patience:
    """The outage state one process shares between its storages: since when the storage
    has been away, the bound, and whom to tell."""

    def __init__(self, outage_s: float, what: str = "the study's storage"):
        self.outage_s, self.what = float(outage_s), what
        self.on_away: Callable[[str], None] | None = None
        self.on_back: Callable[[str], None] | None = None
        self.away_since: float | None = None  # time.time() of the first failure
        self.gave_up = False
        self._lock = threading.Lock()

    def call(self, name: str, method: Callable[..., Any], storage: BaseStorage,
             args: tuple, kwargs: dict) -> Any:
        wait, retried = FIRST_WAIT_S, False
        while True:
            try:
                result = method(storage, *args, **kwargs)
            except UpdateFinishedTrialError:
                if retried and name == "set_trial_state_values" and _made(storage, args):
                    result = True  # the first try's write went through; its answer did not
                else:
                    raise
            except Exception as error:
                if not is_outage(error):
                    raise
                self._away(error)
                _reset_session(storage)
                time.sleep(wait)
                wait, retried = min(wait * 2, LONGEST_WAIT_S), True
                continue
            self._answered()
            return result

    def wait_out(self, what: str, call: Callable[..., Any], *args: Any) -> Any:
        """``call(*args)``, waited out through an outage as a storage method is (for the
        calls that reach the database around Optuna's methods: the claim's lock)."""
        return self.call(what, lambda _, *a: call(*a), None, args, {})

    def _away(self, error: BaseException) -> None:
        with self._lock:
            now = time.time()
            if self.away_since is None:
                self.away_since = now
                if self.on_away is not None:
                    self.on_away(f"{self.what} does not answer since "
                                 f"{time.strftime('%H:%M:%S', time.localtime(now))} "
                                 f"({_what(error)}); waiting up to {self.outage_s:g} s")
            if self.gave_up or now - self.away_since >= self.outage_s:
                self.gave_up = True
                raise StorageUnavailable(
                    f"{self.what} did not answer for {now - self.away_since:.0f} s "
                    f"({_what(error)})") from error

    def _answered(self) -> None:
        if self.away_since is None:
            return
        with self._lock:
            if self.away_since is not None:
                away = time.time() - self.away_since
                self.away_since, self.gave_up = None, False
                if self.on_back is not None:
                    self.on_back(f"{self.what} answers again, after {away:.0f} s")


def _reset_session(storage: BaseStorage | None) -> None:
    """An RDB storage's session whose connection was lost mid-transaction refuses
    every later statement until it is rolled back ("Can't reconnect until invalid
    transaction is rolled back"); this thread's session is dropped, and the retry opens
    a new one."""
    sessions = getattr(storage, "scoped_session", None)
    if sessions is not None:
        with contextlib.suppress(Exception):
            sessions.remove()


def _made(storage: BaseStorage, args: tuple) -> bool:
    """Whether the trial's end that a retried ``set_trial_state_values`` asked for is
    what the storage holds."""
    trial_id, state = args[0], args[1]
    return storage.get_trial(trial_id).state == state


def _what(error: BaseException) -> str:
    root = error
    while root.__cause__ is not None:
        root = root.__cause__
    return f"{type(root).__name__}: {first_line(str(root))}"[:200]


_PATIENT_CLASSES: dict[type, type] = {}


def patient(storage: BaseStorage, patience: Patience) -> BaseStorage:
    """``storage`` itself, its methods now waiting out outages with ``patience``: its
    class becomes a subclass of its own (so that ``isinstance`` checks, Optuna's among
    them, still hold)."""
    cls = type(storage)
    if cls not in _PATIENT_CLASSES:
        _PATIENT_CLASSES[cls] = type(f"Patient{cls.__name__}", (cls,), {
            name: _waiting(name, getattr(cls, name)) for name in STORAGE_METHODS
            if callable(getattr(cls, name, None))})
    storage.__class__ = _PATIENT_CLASSES[cls]
    storage._tuner_patience = patience
    return storage


def patience_of(storage: BaseStorage) -> Patience | None:
    """The patience a storage was opened with (:func:`patient`), if any."""
    return getattr(storage, "_tuner_patience", None)


def _waiting(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    def call(self, *args: Any, **kwargs: Any) -> Any:
        return self._tuner_patience.call(name, method, self, args, kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = method.__doc__
    return call

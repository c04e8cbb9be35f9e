"""When the MLflow store stops taking writes: short retries, then a pause.

MLflow's client retries a request 7 times with exponential backoff and a 120 s timeout,
so one write to a dead server blocks for minutes. tuner's processes write between
training steps, so they bound that (only where the user has not set MLflow's own
variables, see ``HTTP_DEFAULTS``): a refused connection then costs about 2.5 s, a
server that accepts connections but never answers about 30 s.

After the first such failure the :class:`Breaker` opens: for ``COOLDOWN_S`` every write
goes straight to the outbox (:mod:`tuner.tracking.outbox`) without a request, and then
one ``/health`` probe (2 s at most) decides whether to try the server again. A trial
therefore waits for one failed request, not one per write.

The local store (an SQLite file) has a breaker too (:class:`LocalBreaker`): a full
disk, a locked or damaged file fails its writes as a server's absence does, and the
records wait in the outbox the same way; after a shorter pause the next write tries
the file again.
"""

from __future__ import annotations

import errno
import os
import time

import requests
from mlflow.exceptions import MlflowException
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from tuner.core.errors import first_line
from tuner.core.masking import mask
from tuner.tracking.server import server_answers

HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",  # retries per request (MLflow's default: 7)
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",  # seconds, doubling per retry (default: 2)
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",  # random seconds added per retry
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",  # seconds to connect or wait for data (default: 120)
    # MLflow prints two lines ("View run ... at: <url>") each time a run on a tracking
    # server ends; tuner says what it did in its own words.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
COOLDOWN_S = 30.0  # seconds without requests after a failure, before the next probe

_UNREACHABLE = (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                requests.exceptions.RetryError, MaxRetryError, NewConnectionError,
                ProtocolError, ConnectionError, TimeoutError)
# An SQLite store that cannot take a write now (its file, or the disk under it).
_LOCAL_FAILURES = ("database or disk is full", "database is locked", "disk i/o error",
                   "unable to open database file", "database disk image is malformed")
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO}


def bound_http_retries() -> None:
    """Set ``HTTP_DEFAULTS`` in this process's environment (inherited by the slots and
    ranks it starts) unless the user set them; MLflow reads them at every request."""
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)


def is_unavailable(error: BaseException) -> bool:
    """True when ``error`` means the server could not be reached or did not answer in
    time (refused or timed-out connections, or 5xx answers until the retries ran out),
    as opposed to a request that the server answered by refusing it."""
    seen: BaseException | None = error
    for _ in range(20):  # the chain of causes is short; never loop on a cycle
        if seen is None:
            break
        if isinstance(seen, _UNREACHABLE):
            return True
        if isinstance(seen, OSError) and seen.errno in _DISK_ERRNOS:
            return True
        if any(failure in str(seen).lower() for failure in _LOCAL_FAILURES):
            return True  # SQLite's own words, also where MLflow re-raised them as its own
        seen = seen.__cause__ or seen.__context__
    # MLflow wraps every failure of the HTTP call itself (not an error answer) this way.
    return isinstance(error, MlflowException) and str(error.message).startswith("API request to")


class Breaker:
    """Whether this process should try the tracking server now (one per process)."""

    def __init__(self, tracking_uri: str, cooldown: float = COOLDOWN_S):
        self.tracking_uri = tracking_uri
        self.cooldown = cooldown
        self.last_error: str | None = None  # why it opened, for messages
        self._open_until: float | None = None  # monotonic seconds; None: closed

    def allows_try(self) -> bool:
        """Closed: yes. Open: no until the cooldown ends, then yes if ``/health`` answers."""
        if self._open_until is None:
            return True
        if time.monotonic() < self._open_until:
            return False
        if server_answers(self.tracking_uri):
            self._open_until = None
            return True
        self._open_until = time.monotonic() + self.cooldown
        return False

    def trip(self, error: BaseException) -> None:
        self.last_error = mask(first_line(str(error)) or repr(error))[:300]
        self._open_until = time.monotonic() + self.cooldown

    def try_now(self) -> None:
        """Let the next write try at once (the end of a sweep, ``tuner sync``): records
        that wait are written now if the store takes them, not after the pause."""
        if self._open_until is not None:
            self._open_until = time.monotonic()

    def absent(self) -> str:
        """What is wrong, in words, for messages."""
        return f"the MLflow tracking server does not answer ({self.last_error})"


LOCAL_COOLDOWN_S = 5.0


class LocalBreaker(Breaker):
    """The local store's breaker: after the pause, the next write is the probe."""

    def __init__(self, tracking_uri: str, cooldown: float = LOCAL_COOLDOWN_S):
        super().__init__(tracking_uri, cooldown)

    def allows_try(self) -> bool:
        if self._open_until is not None and time.monotonic() >= self._open_until:
            self._open_until = None
        return self._open_until is None

    def absent(self) -> str:
        return f"the MLflow store does not take writes ({self.last_error})"

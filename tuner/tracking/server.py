"""Making sure an MLflow tracking server answers before a sweep writes anything.

MLflow's client retries a request seven times with exponential backoff, so a sweep
pointed at a server that is down would sit for minutes in its first call, after the
study had been created. This check asks the server's ``/health`` endpoint a few times
with short timeouts and gives up within seconds, before any record exists.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.parse
import urllib.request

from tuner.core.errors import ConfigError, Problem
from tuner.core.masking import mask

ATTEMPTS = 3
TIMEOUT_S = 1.5  # per attempt: at most about 5.5 s in all, with the pauses
PAUSE_S = 0.5


def _health_url(tracking_uri: str) -> str:
    # Credentials written into the URI go to MLflow's client, not to this probe.
    parts = urllib.parse.urlsplit(tracking_uri)
    netloc = parts.hostname or ""
    if ":" in netloc:  # an IPv6 address
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc,
                                    parts.path.rstrip("/") + "/health", "", ""))


def _probe(url: str) -> str | None:
    """None when a server answers at ``url``; otherwise what went wrong."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S):
            return None
    except urllib.error.HTTPError as error:
        # 401/403: an authenticating server (it answered; MLflow's client brings the
        # credentials). Anything else is not a tracking server we can use.
        return None if error.code in (401, 403) else f"HTTP {error.code} from {url}"
    except (urllib.error.URLError, OSError) as error:
        return str(getattr(error, "reason", error))


def is_server_uri(tracking_uri: str) -> bool:
    """A tracking server (http or https), not a local store (a path or ``sqlite:///``)."""
    return tracking_uri.startswith(("http://", "https://"))


def check_tracking_server(tracking_uri: str, where: str) -> None:
    """Raise ConfigError unless the tracking server at ``tracking_uri`` answers.

    Local stores (a file path or ``sqlite:///``) need no server and pass at once."""
    if not is_server_uri(tracking_uri):
        return
    url = _health_url(tracking_uri)
    why = None
    for attempt in range(ATTEMPTS):
        why = _probe(url)
        if why is None:
            return
        if attempt < ATTEMPTS - 1:
            time.sleep(PAUSE_S)
    raise ConfigError(Problem(
        where, "tracking.tracking_uri",
        f"no MLflow tracking server answers at {mask(tracking_uri)} "
        f"({ATTEMPTS} tries): {mask(str(why))}",
        "start it (`mlflow server --host ... --port ...`), or point MLFLOW_TRACKING_URI "
        "at one that runs"))


def server_answers(tracking_uri: str) -> bool:
    """One quick ``/health`` probe, no retries: for deciding whether to try the server
    again after it stopped answering (tuner.tracking.breaker)."""
    return _probe(_health_url(tracking_uri)) is None

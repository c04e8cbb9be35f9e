"""Links from a page to MLflow runs: the report's trials, the comparison's studies.

A page is read in two places. Opened as a file, its links go to the MLflow UI recorded
here: the tracking server, or `tuner ui` on its default port for a local store. Shown
in MLflow's artifact viewer, the page knows better: the UI around it is the one to go
to, whatever its host and port, and the page's script (dashboards/_page.html.j2) points
each link there from the route kept beside it (``data-mlflow-route``).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

LOCAL_UI = "http://127.0.0.1:5000"  # where `tuner ui` serves a local store by default


def tracking_url(tracking_uri: str) -> str:
    """Where a person opens the MLflow UI for ``tracking_uri``: the server itself (with
    no user or password: the page is shared and logged as an artifact), or `tuner ui` on
    its default port for a local store."""
    if not tracking_uri.startswith(("http://", "https://")):
        return LOCAL_UI
    parts = urlsplit(tracking_uri)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


@dataclass(frozen=True)
class RunLink:
    """A run's page in the MLflow UI: ``href`` for a page opened as a file, ``route``
    (relative to the UI's base) for the page's script inside the UI."""

    href: str
    route: str


def run_link(ui_url: str, run_id: str) -> RunLink:
    # MLflow 3's UI routes #/runs/<id> to #/experiments/<experiment>/runs/<id>, so a
    # run's link needs no experiment id (which the Optuna study does not keep).
    route = f"#/runs/{run_id}"
    return RunLink(f"{ui_url}/{route}", route)

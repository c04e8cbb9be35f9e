"""``tuner dashboard STUDY``: optuna-dashboard's live view over the study's storage.

Read-only: optuna-dashboard can also write (notes, deleting a study, marking trials),
so every request that is not a read is refused before it reaches it; the storage is
read the way any other reader reads it (the journal without its lock, SQL through
short read transactions), so a running sweep is neither slowed nor changed. It binds
loopback, under the same rule as ``tuner ui``: another interface needs
MLFLOW_AUTH_ADMIN_PASSWORD, and then every request needs the user ``admin`` and that
password (HTTP basic authentication; put it behind TLS or an SSH tunnel).
"""

from __future__ import annotations

import base64
import os
import secrets
import socket
import socketserver
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from tuner.app.lookup import existing_storage, load_study
from tuner.app.ui import ADMIN_PASSWORD_ENV, ADMIN_USER, LOOPBACK, check_ui_host
from tuner.config.compose import Composed
from tuner.core.errors import ConfigError, Problem
from tuner.core.quiet import quiet_optuna
from tuner.study.storage import find_study_id

READS = ("GET", "HEAD", "OPTIONS")

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]


def read_only(app: WSGIApp) -> WSGIApp:
    """``app``, refusing every request that could write (405)."""

    def guarded(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET").upper() not in READS:
            start_response("405 Method Not Allowed", [("Content-Type", "text/plain"),
                                                     ("Allow", ", ".join(READS))])
            return [b"tuner dashboard is read-only\n"]
        return app(environ, start_response)

    return guarded


def basic_auth(app: WSGIApp, password: str) -> WSGIApp:
    """``app`` behind HTTP basic authentication: user ADMIN_USER, ``password``."""
    expected = "Basic " + base64.b64encode(f"{ADMIN_USER}:{password}".encode()).decode()

    def guarded(environ: dict, start_response: Callable) -> Iterable[bytes]:
        scheme, _, token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        given = f"Basic {token.strip()}" if scheme.lower() == "basic" else ""
        if not secrets.compare_digest(given.encode(), expected.encode()):
            start_response("401 Unauthorized", [
                ("Content-Type", "text/plain"),
                ("WWW-Authenticate", 'Basic realm="tuner dashboard"')])
            return [b"authentication required\n"]
        return app(environ, start_response)

    return guarded


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a browser's open connections do not hold Ctrl-C up


class _Server6(_Server):
    address_family = socket.AF_INET6  # --host ::1 (WSGIServer binds IPv4 only)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # a line per request (the page polls) would bury the terminal


def make_dashboard(composed: Composed, host: str, port: int) -> tuple[WSGIServer, str]:
    """The dashboard's server for the composed study (checked first), and its address."""
    from optuna_dashboard import wsgi

    check_ui_host(host, port)
    storage = existing_storage(composed)
    study = load_study(composed, storage=storage)  # unknown: refused, listing those there
    quiet_optuna()
    app = read_only(wsgi(storage))
    if host not in LOOPBACK:
        app = basic_auth(app, os.environ[ADMIN_PASSWORD_ENV])
    try:
        server = make_server(host, port, app, handler_class=_QuietHandler,
                             server_class=_Server6 if ":" in host else _Server)
    except OSError as error:  # the port is taken, the address is not this machine's
        raise ConfigError(Problem("command line", "--host/--port",
                                  f"cannot listen on {host} port {port}: {error.strerror}",
                                  "choose another --port (or stop what holds it)")) from error
    study_id = find_study_id(storage, study.study_name)
    shown = f"[{host}]" if ":" in host else host
    return server, f"http://{shown}:{server.server_port}/dashboard/studies/{study_id}"

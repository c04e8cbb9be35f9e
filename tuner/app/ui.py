"""``tuner ui`` and ``tuner serve``: MLflow's own UI and model server over a study's records.

Both bind loopback. The MLflow UI also serves the REST API and the artifacts (the
trained models), so it is never put on the network open: with
``MLFLOW_AUTH_ADMIN_PASSWORD`` in the environment, ``tuner ui --host 0.0.0.0`` starts
MLflow's own ``basic-auth`` app: every request needs a user and password, and the first
start creates the user ``admin`` with that password (MLflow reads the variable itself;
it is never written to a file). The app's user store is an SQLite file beside the
study's records. The model server has no authentication at all: loopback only.
"""

from __future__ import annotations

import os
import secrets
import shlex
import socket
import sys
from pathlib import Path

from tuner.app.lookup import champion_uri, existing_tracking_uri
from tuner.config.compose import Composed
from tuner.core.errors import ConfigError, Problem

ADMIN_PASSWORD_ENV = "MLFLOW_AUTH_ADMIN_PASSWORD"
ADMIN_USER = "admin"
MIN_PASSWORD_LENGTH = 12  # MLflow's auth app refuses to create the admin with less
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def basic_auth_config(run_dir: Path) -> Path:
    """Write the basic-auth app's settings into ``run_dir``; return the file's path."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "basic_auth.ini"
    path.write_text(
        "[mlflow]\n"
        # Signed-in users may read everything; only the admin may change or delete.
        "default_permission = READ\n"
        f"database_uri = sqlite:///{run_dir / 'basic_auth.db'}\n"
        f"admin_username = {ADMIN_USER}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    return path


def check_ui_host(host: str, port: int) -> None:
    """Raise ConfigError unless ``host`` is loopback or basic-auth can protect it."""
    if host in LOOPBACK:
        return
    if not os.environ.get(ADMIN_PASSWORD_ENV):
        raise ConfigError(Problem(
            "command line", "--host", f"refusing to bind {host} without authentication: "
            "the records and models would be open to the network",
            f"set {ADMIN_PASSWORD_ENV} to turn on MLflow's basic-auth (user 'admin'), or "
            f"use --host 127.0.0.1 and an SSH tunnel ({_tunnel(port)})"))
    if len(os.environ[ADMIN_PASSWORD_ENV]) < MIN_PASSWORD_LENGTH:
        raise ConfigError(Problem(
            "environment", ADMIN_PASSWORD_ENV,
            f"is shorter than {MIN_PASSWORD_LENGTH} characters, which MLflow refuses",
            f"choose a longer password (at least {MIN_PASSWORD_LENGTH} characters)"))


def check_loopback(host: str, port: int) -> None:
    if host not in LOOPBACK:
        raise ConfigError(Problem(
            "command line", "--host", f"refusing to bind {host}: the MLflow server has no "
            "authentication here, so it would expose the records (and the models) to the "
            "network", "use --host 127.0.0.1 and reach it through an SSH tunnel "
            f"({_tunnel(port)})"))


def _tunnel(port: int) -> str:
    return f"ssh -L {port}:127.0.0.1:{port} host"


def local_url(host: str, port: int, path: str) -> str:
    """Where this machine reaches ``path`` on a server bound to ``host``."""
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    return f"http://{f'[{host}]' if ':' in host else host}:{port}{path}"


def check_port_free(host: str, port: int) -> None:
    """Raise ConfigError when ``port`` on ``host`` cannot be listened on (taken, or not
    this machine's address): MLflow's servers would say so only in their log, after
    tuner had printed the address, and exit 0 (the UI) or 35 s later (the model server)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As the servers bind: a port in TIME_WAIT from the last run is free to them.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise ConfigError(Problem(
                "command line", "--port", f"cannot listen on {host} port {port}: "
                f"{error.strerror or error}", "choose another --port (or stop what holds "
                "it)")) from error


def ui_command(composed: Composed, host: str, port: int, workers: int = 1
               ) -> tuple[list[str], str]:
    """The MLflow UI's command line over the study's store, and the line to show.
    Checks first (host, port, store exists); sets the basic-auth app's environment."""
    check_ui_host(host, port)
    check_port_free(host, port)
    public = host not in LOOPBACK
    uri = existing_tracking_uri(composed)
    command = [sys.executable, "-m", "mlflow", "server" if public else "ui",
               "--backend-store-uri", uri, "--host", host, "--port", str(port),
               "--workers", str(max(1, workers))]
    if public:
        os.environ["MLFLOW_AUTH_CONFIG_PATH"] = str(basic_auth_config(
            Path(composed.cfg.run_dir).resolve()))
        # The auth app signs its CSRF tokens with this key; one per start unless given.
        os.environ.setdefault("MLFLOW_FLASK_SERVER_SECRET_KEY", secrets.token_urlsafe(32))
        command += ["--app-name", "basic-auth"]
    if composed.cfg.tracking.artifact_location:
        command += ["--default-artifact-root", composed.cfg.tracking.artifact_location]
    auth = " with basic-auth (user 'admin')" if public else ""
    # MLflow 3's UI opens in its GenAI view (traces, judges, prompts) unless the browser
    # chose otherwise: no server setting or experiment tag changes that (checked: 3.17).
    return command, (f"MLflow UI for {uri} ready at http://{host}:{port}{auth} (Ctrl-C to "
                     "stop)\nthe runs are under 'Model training' at the top of MLflow's "
                     "sidebar (it opens on 'GenAI'; your browser keeps the choice)")


def serve_command(composed: Composed, host: str, port: int) -> tuple[list[str], str]:
    """MLflow's model server over the study's champion, and the line to show."""
    check_loopback(host, port)
    check_port_free(host, port)
    uri = existing_tracking_uri(composed)
    model_uri = champion_uri(composed)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri,
               "--env-manager", "local", "--host", host, "--port", str(port)]
    url = f"http://{host}:{port}/invocations"
    return command, f"serving {model_uri} at {url} (Ctrl-C to stop)" + _input_lines(
        model_uri, url)


def _input_lines(model_uri: str, url: str) -> str:
    """What the served model takes, from the signature MLflow keeps beside it, and a
    request that the model was logged with."""
    from tuner.tracking.model_input import model_input

    expected = model_input(model_uri)
    if expected is None:
        return ""
    lines = f"\ninput: {{\"inputs\": [...]}}, {expected.shape}"
    if expected.example is not None:
        lines += (f"\ntry: curl -X POST -H 'Content-Type: application/json' "
                  f"--data @{shlex.quote(expected.example)} {url}")
    return lines

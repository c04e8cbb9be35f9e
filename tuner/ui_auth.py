"""MLflow's basic-auth for `tuner ui` on a host other than loopback.

The MLflow UI also serves the REST API and the artifacts (the trained models), so it is
never put on the network open. With ``MLFLOW_AUTH_ADMIN_PASSWORD`` in the environment,
``tuner ui --host 0.0.0.0`` starts MLflow's own ``basic-auth`` app: every request needs
a user and password, and the first start creates the user ``admin`` with that password
(MLflow reads the variable itself; it is never written to a file). The app's user store
is an SQLite file beside the study's records.
"""

from __future__ import annotations

from pathlib import Path

ADMIN_PASSWORD_ENV = "MLFLOW_AUTH_ADMIN_PASSWORD"
ADMIN_USER = "admin"
MIN_PASSWORD_LENGTH = 12  # MLflow's auth app refuses to create the admin with less


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

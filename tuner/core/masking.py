"""Keep passwords out of what tuner writes.

Credentials belong in the environment (``PGPASSWORD``, ``MLFLOW_TRACKING_PASSWORD``),
where PostgreSQL's and MLflow's own clients read them, and tuner's configs never hold
them. A user may still write one into a URL (``postgresql://me:secret@host/db``); every
config, param, tag, reason and log line tuner writes passes through :func:`mask` first.
"""

from __future__ import annotations

import re

# scheme://user:password@host -> keep the user, hide the password.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*):(?P<secret>[^@\s/]+)@")


def mask(text: str) -> str:
    return _URL_PASSWORD.sub(r"\g<head>:***@", text)

"""A module's own ``mlflow.log_*`` calls land on its trial's run.

MLflow's fluent API logs to the active run, starting one when there is none: from
``MLFLOW_RUN_ID`` if set (the run is resumed), else a new run in the default
experiment. Setting the trial's store and run in the environment while it trains gives
a module's ``mlflow.log_figure(...)`` the trial's run, without importing MLflow in a
slot whose module never calls it. Afterwards the fluent run, if the module started
one, is ended, so that the next trial in the same process does not log into it; the
driver ends the run for good right after (tuner.launch.conclude), with the trial's state.

The preflight's module gets a throw-away store instead, deleted with its contents.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TRACKING_URI_ENV, RUN_ID_ENV = "MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID"


@contextmanager
def fluent_run(tracking_uri: str, run_id: str | None) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in (TRACKING_URI_ENV, RUN_ID_ENV)}
    os.environ[TRACKING_URI_ENV] = tracking_uri
    if run_id is not None:
        os.environ[RUN_ID_ENV] = run_id
    else:
        os.environ.pop(RUN_ID_ENV, None)
    try:
        yield
    finally:
        mlflow = sys.modules.get("mlflow")
        try:
            if mlflow is not None and mlflow.active_run() is not None:
                mlflow.end_run()
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@contextmanager
def throwaway_run() -> Iterator[None]:
    """For the preflight: fluent calls work and write nothing that stays."""
    folder = Path(tempfile.mkdtemp(prefix="tuner-preflight-mlflow-"))
    try:
        with fluent_run(folder.as_uri(), None):
            yield
    finally:
        shutil.rmtree(folder, ignore_errors=True)

"""The local MLflow store is created whole or not at all, by exactly one process."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlflow import MlflowClient

from tuner.tracking.local_store import ensure_local_store, prebuilder

CREATE = ("import sys; from tuner.tracking.local_store import ensure_local_store; "
          "ensure_local_store(sys.argv[1])")


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {r[0] for r in db.execute("select name from sqlite_master where type='table'")}


def test_a_kill_during_creation_leaves_no_half_made_store(tmp_path):
    db = tmp_path / "runs" / "mlflow.db"
    uri = f"sqlite:///{db}"
    creator = subprocess.Popen([sys.executable, "-c", CREATE, uri])
    # Wait until the migrations are under way (the private file exists), then kill.
    deadline = time.monotonic() + 60
    while not list(db.parent.glob("mlflow.db.creating-*")):
        assert time.monotonic() < deadline and creator.poll() is None, "creation never began"
        time.sleep(0.01)
    os.kill(creator.pid, signal.SIGKILL)
    creator.wait()
    assert not db.exists(), "a killed creation must not leave a store in place"

    ensure_local_store(uri)  # the next command: builds it afresh, clears the stray file
    assert {"experiments", "runs", "metrics", "registered_models"} <= tables(db)
    assert not list(db.parent.glob("mlflow.db.creating-*"))
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.create_experiment("after-the-kill")
    assert client.create_run(experiment).info.status == "RUNNING"


def test_processes_starting_together_share_one_store(tmp_path):
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    creators = [subprocess.Popen([sys.executable, "-c", CREATE, uri],
                                 stderr=subprocess.PIPE, text=True) for _ in range(3)]
    errors = [c.communicate(timeout=120)[1] for c in creators]
    assert [c.returncode for c in creators] == [0, 0, 0], errors
    assert "registered_models" in tables(db)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]


def test_a_store_migrated_ahead_of_time_is_copied_into_place(tmp_path, monkeypatch):
    # A temporary folder of this test's own: other sweeps on the machine (or killed ones
    # of earlier tests) leave their own tuner-store-* folders in the shared one.
    own_tmp = tmp_path / "tmp"
    own_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(own_tmp))
    db = tmp_path / "runs" / "mlflow.db"
    uri = f"sqlite:///{db}"
    build = prebuilder(uri)
    assert build is not None
    build()  # the driver's warm-up thread, while the slots start
    assert not (tmp_path / "runs").exists(), "nothing is written in the project before use"
    temporary = [p for p in own_tmp.glob("tuner-store-*") if (p / "store.db").exists()]
    assert temporary, "the early build happens in a temporary folder"

    ensure_local_store(uri)
    assert {"experiments", "runs", "metrics", "registered_models"} <= tables(db)
    assert sorted(p.name for p in db.parent.iterdir()) == ["mlflow.db"]
    assert not any(p.exists() for p in temporary), "the temporary copy is removed"
    client = MlflowClient(uri, registry_uri=uri)
    assert client.create_run(client.create_experiment("early")).info.status == "RUNNING"


def test_no_early_build_for_a_store_that_exists_or_a_server(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ensure_local_store(uri)
    assert prebuilder(uri) is None
    assert prebuilder("http://127.0.0.1:5000") is None

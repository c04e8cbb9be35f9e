"""The local MLflow store is created whole or not at all, by exactly one process."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

from tests.conftest import load_study
from tuner.tracking.local_store import CACHE_ENV, ensure_local_store, prebuilder, template_path

CREATE = ("import sys; from tuner.tracking.local_store import ensure_local_store; "
          "ensure_local_store(sys.argv[1])")


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {r[0] for r in db.execute("select name from sqlite_master where type='table'")}


def test_a_kill_during_creation_leaves_no_half_made_store(tmp_path):
    db = tmp_path / "runs" / "mlflow.db"
    uri = f"sqlite:///{db}"
    # No template to copy (its cache is a file, not a folder): the store is migrated in
    # place, for a second or so, and the kill lands mid-way.
    (tmp_path / "no-cache").write_text("")
    creator = subprocess.Popen([sys.executable, "-c", CREATE, uri],
                               env={**os.environ, CACHE_ENV: str(tmp_path / "no-cache")})
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


def test_a_new_store_is_a_copy_of_the_machines_template(tmp_path, monkeypatch):
    """Migrated once per MLflow version into the user's cache (by the sweep's warm-up,
    while its slots start), then copied: the same store MLflow would have made."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    db = tmp_path / "runs" / "mlflow.db"
    uri = f"sqlite:///{db}"
    build = prebuilder(uri)
    assert build is not None
    build()  # the driver's warm-up thread, while the slots start
    assert not (tmp_path / "runs").exists(), "nothing is written in the project before use"
    assert template_path().is_file() and template_path().is_relative_to(tmp_path / "cache")

    ensure_local_store(uri)
    assert sorted(p.name for p in db.parent.iterdir()) == ["mlflow.db"]
    native = tmp_path / "native" / "mlflow.db"  # what MLflow makes by itself, to compare
    SqlAlchemyStore(f"sqlite:///{native}", str(native.parent / "mlartifacts")).engine.dispose()
    assert tables(db) == tables(native)
    assert _versions(db) == _versions(native)
    client = MlflowClient(uri, registry_uri=uri)
    [default] = client.search_experiments()
    assert default.artifact_location == str(db.parent / "mlartifacts" / "0")
    assert client.create_run(client.create_experiment("early")).info.status == "RUNNING"
    made = template_path().stat().st_mtime_ns
    ensure_local_store(f"sqlite:///{tmp_path / 'second' / 'mlflow.db'}")
    assert template_path().stat().st_mtime_ns == made  # copied again, not migrated again


def _versions(path: Path) -> list:
    with sqlite3.connect(path) as db:
        return db.execute("select version_num from alembic_version").fetchall()


def test_no_early_build_for_a_store_that_exists_or_a_server(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ensure_local_store(uri)
    assert prebuilder(uri) is None
    assert prebuilder("http://127.0.0.1:5000") is None


def _damage(db: Path, how: str) -> None:
    import os

    with sqlite3.connect(db) as connection:  # everything in the main file, none in its WAL
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = db.stat().st_size
    if how == "cut in half":
        os.truncate(db, size // 2)
    else:  # four pages in the middle overwritten, as a failing disk might
        with db.open("r+b") as data:
            data.seek(size // 2 - (size // 2) % 4096)
            data.write(bytes(range(256)) * 64)


@pytest.mark.parametrize("how", ["cut in half", "pages overwritten"])
def test_a_damaged_store_is_refused_before_the_study_is_touched(how, tmp_path):
    from tests.conftest import FAST, run_tuner, sweep, tuner_here

    run_dir = tmp_path / "runs"
    sweep("n_trials=2", run_dir=run_dir)
    db = run_dir / "mlflow.db"
    _damage(db, how)
    journal = (run_dir / "optuna.journal").read_bytes()
    args = ("sweep", f"run_dir={run_dir}", *FAST, "n_trials=4")

    refused = tuner_here(*args, cwd=tmp_path)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"the MLflow store {db} is damaged (database disk image is malformed)" in \
        refused.stderr
    assert "move it aside" in refused.stderr and "Traceback" not in refused.stderr
    assert (run_dir / "optuna.journal").read_bytes() == journal  # the study is untouched
    ui = run_tuner("ui", f"run_dir={run_dir}", cwd=tmp_path)  # it would exec MLflow's server
    assert ui.returncode == 2 and "is damaged" in ui.stderr

    aside = run_dir / "damaged"  # as the message says
    aside.mkdir()
    for part in run_dir.glob("mlflow.db*"):
        part.rename(aside / part.name)
    # A new process: this one's MLflow keeps its store of the old file open.
    again = run_tuner(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(load_study(run_dir).trials) == 4

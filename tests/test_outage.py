"""The study's database goes away mid-sweep, for real (tuner.study.outage).

A PostgreSQL of this file's own on 127.0.0.1 (the session's is shared by other tests):
restarted as routine maintenance does, and stopped for longer than the sweep waits.
The MLflow store is the embedded one, so that only the study's storage fails.
"""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import FAST, client_for, start, stop, trial_runs, tuner_here
from tests.servers import PostgresServer
from tuner.cli import OUTAGE_EXIT
from tuner.core.errors import StorageUnavailable
from tuner.study.outage import Patience, is_outage, patient
from tuner.tracking import tags

SWEEP = ("sweep", "storage=postgres", "n_trials=10", *FAST, "trainer.max_epochs=3",
         "pruner=none")


@pytest.fixture(scope="module")
def database_server(tmp_path_factory):
    with PostgresServer(tmp_path_factory.mktemp("outage-postgres")) as server:
        yield server


def _study(server: PostgresServer, database: str) -> optuna.Study:
    storage = optuna.storages.RDBStorage(server.url(database, with_password=True))
    return optuna.load_study(study_name="digits-mlp", storage=storage)


def _wait_for_finished(server: PostgresServer, database: str, n: int, process) -> None:
    # One storage for the whole wait: a new one per look (an engine, a pool, a schema
    # check each) is slow enough under load for a short sweep to end unseen.
    deadline = time.monotonic() + 240
    storage = None
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read()
        try:
            storage = storage or optuna.storages.RDBStorage(
                server.url(database, with_password=True))
            trials = storage.get_all_trials(
                storage.get_study_id_from_name("digits-mlp"), deepcopy=False)
        except Exception:  # the study is not there yet
            trials = []
        if sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) >= n:
            return
        time.sleep(0.3)
    raise AssertionError(f"fewer than {n} trials finished")


def _nothing_running(server: PostgresServer, database: str, run_dir: Path) -> None:
    trials = _study(server, database).get_trials(deepcopy=False)
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 10
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    runs = trial_runs(run_dir, "digits-mlp")
    assert "RUNNING" not in {r.info.status for r in runs}


def test_a_database_restarted_and_away_for_seconds_is_waited_out(database_server, tmp_path):
    database = database_server.create_database("waited_out")
    process = start([*SWEEP], tmp_path, env=database_server.env(database))
    try:
        _wait_for_finished(database_server, database, 2, process)
        database_server.restart()  # routine maintenance: about a second down
        _wait_for_finished(database_server, database, 4, process)
        database_server.halt()  # and then away for a few seconds
        time.sleep(6)
        database_server.resume()
        output = process.communicate(timeout=300)[0]
    finally:
        if process.poll() is None:
            stop(process)
    assert process.returncode == 0, output
    assert "does not answer since" in output and "answers again, after" in output, output
    _nothing_running(database_server, database, tmp_path / "runs")


def test_a_database_away_too_long_stops_the_sweep_cleanly_and_the_rerun_finishes(
        database_server, tmp_path):
    database = database_server.create_database("away_too_long")
    args = (*SWEEP, "storage.outage_s=4")
    process = start(list(args), tmp_path, env=database_server.env(database))
    try:
        _wait_for_finished(database_server, database, 2, process)
        database_server.halt()
        stopped_at = time.monotonic()
        output = process.communicate(timeout=180)[0]
        took = time.monotonic() - stopped_at
    finally:
        if process.poll() is None:
            stop(process)
        database_server.resume()
    assert process.returncode == OUTAGE_EXIT, output
    assert "error: the study's storage (postgresql" in output
    assert "did not answer for" in output and "run the same command again" in output
    assert "Traceback" not in output, output
    assert took < 90, f"stopping took {took:.0f} s"
    run_dir = tmp_path / "runs"
    client = client_for(run_dir)
    experiment = client.get_experiment_by_name("digits-mlp")
    runs = client.search_runs([experiment.experiment_id])
    assert runs and "RUNNING" not in {r.info.status for r in runs}, (  # each one ended
        [(r.data.tags.get(tags.TRIAL_NUMBER), r.info.status) for r in runs], output)
    rerun = tuner_here(*args, cwd=tmp_path, env=database_server.env(database))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    _nothing_running(database_server, database, run_dir)


def test_only_a_lost_connection_or_a_failing_disk_is_waited_out():
    import errno

    import sqlalchemy

    refused = sqlalchemy.exc.OperationalError("connect", {}, Exception("refused"))
    assert is_outage(refused)
    assert not is_outage(optuna.exceptions.StorageInternalError("commit"))
    wrapped = optuna.exceptions.StorageInternalError("commit")
    wrapped.__cause__ = refused
    assert is_outage(wrapped)
    assert is_outage(OSError(errno.ENOSPC, "No space left on device"))
    assert not is_outage(OSError(errno.ENOENT, "gone"))
    assert not is_outage(KeyError("no study"))
    assert not is_outage(StorageUnavailable("gave up"))


def test_a_storage_on_a_full_disk_waits_gives_up_and_answers_again(small_disk):
    """A real journal on a real file system that fills: appends fail with ENOSPC."""
    from tuner.study.journal_file import GuardedJournalFile

    said: list[str] = []
    patience = Patience(1.0, "the journal")
    patience.on_away = patience.on_back = said.append
    storage = patient(optuna.storages.JournalStorage(GuardedJournalFile(
        str(small_disk.path / "optuna.journal"))), patience)
    assert isinstance(storage, optuna.storages.JournalStorage)  # Optuna's checks still hold
    study = optuna.create_study(storage=storage, study_name="s")
    small_disk.fill()
    with pytest.raises(StorageUnavailable, match="the journal did not answer for"):
        for n in range(100):  # the journal's last block holds a few records still
            study.set_user_attr(f"note{n}", "x" * 1000)
    started = time.monotonic()
    with pytest.raises(StorageUnavailable):  # it gave up: the next failure, no second wait
        for n in range(100):  # (the cut-back half record freed a block)
            study.set_user_attr(f"more{n}", "x" * 1000)
    assert time.monotonic() - started < 0.5
    small_disk.free()
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    again = optuna.load_study(study_name="s", storage=optuna.storages.JournalStorage(
        GuardedJournalFile(str(small_disk.path / "optuna.journal"))))
    assert [t.state for t in again.trials] == [TrialState.COMPLETE] * 2  # no half record
    assert "does not answer since" in said[0] and "answers again" in said[-1]


def test_a_sweep_whose_disk_fills_waits_and_loses_no_record(small_disk, tmp_path):
    """The run folder on a real file system that fills mid-sweep and is freed seconds
    later: the journal waits (tuner.study.outage), the MLflow store's writes wait in
    memory when not even the outbox beside it can be written (tuner.launch.run_writer),
    and every trial ends with all of its records."""
    run_dir = small_disk.path / "runs"
    process = start(["sweep", f"run_dir={run_dir}", "n_trials=8", *FAST,
                     "trainer.max_epochs=3", "pruner=none"], tmp_path)
    try:
        deadline = time.monotonic() + 240
        while not _finished_here(run_dir, 2):
            assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
            time.sleep(0.2)
        small_disk.fill()
        # Full until the sweep says so: an append that fits in the journal's last page
        # still succeeds on a full tmpfs, so the first one that fails comes when it
        # comes (each trial's epoch reports append). Then a few seconds more, and freed.
        said, reader = _lines_of(process)
        deadline = time.monotonic() + 120
        while not any("does not answer since" in line for line in said):
            assert process.poll() is None and time.monotonic() < deadline, "".join(said)
            time.sleep(0.2)
        time.sleep(3)
        small_disk.free()
        process.wait(timeout=300)
        reader.join(timeout=10)
        output = "".join(said)
    finally:
        if process.poll() is None:
            stop(process)
    assert process.returncode == 0, output
    assert "does not answer since" in output and "answers again" in output, output
    assert "Traceback" not in output, output
    from tests.conftest import load_study

    trials = load_study(run_dir).trials
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 8, output
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    runs = {r.data.tags[tags.TRIAL_NUMBER]: r for r in trial_runs(run_dir, "digits-mlp")}
    client = client_for(run_dir)
    for trial in trials:
        if trial.state != TrialState.COMPLETE:
            continue
        run = runs[str(trial.number)]
        assert run.info.status == "FINISHED", (trial.number, output)
        assert {"model.lr", "seed"} <= set(run.data.params)
        assert len(client.get_metric_history(run.info.run_id, "val_acc")) == 3, trial.number
    assert not list((run_dir / "mlflow-outbox").rglob("*.jsonl"))  # nothing left waiting


def _lines_of(process):
    """The process's output lines as they come, read on a thread (join it once the
    process has exited to have them all)."""
    import threading

    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")),
                              daemon=True)
    reader.start()
    return lines, reader


def _finished_here(run_dir: Path, n: int) -> bool:
    from tests.conftest import load_study

    try:
        trials = load_study(run_dir).trials
    except (KeyError, FileNotFoundError, ValueError):
        return False
    return sum(t.state == TrialState.COMPLETE for t in trials) >= n

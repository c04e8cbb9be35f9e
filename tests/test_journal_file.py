"""A study journal whose last record was cut short (a crash mid-write, a full disk).

Optuna's own backend loses the study (the first test shows it, and fails the day an
Optuna release fixes it: then tuner's guard can go); tuner's cuts the tail back, keeps
the bytes, says so, and the rerun finishes the study.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from tests.conftest import FAST, load_study, tuner_command, tuner_here, wait_until_gone
from tuner.study.journal_file import GuardedJournalFile


def _study_with_a_torn_last_line(path: Path, backend) -> None:
    """Three trials, then the file's last line cut in half, as a crash leaves it."""
    study = optuna.create_study(study_name="s", storage=JournalStorage(backend(str(path))))
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=3)
    data = path.read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1
    path.write_bytes(data[:last + (len(data) - last) // 2])


def test_optunas_own_backend_still_loses_a_study_after_a_torn_line(tmp_path):
    path = tmp_path / "optuna.journal"
    _study_with_a_torn_last_line(path, JournalFileBackend)
    study = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(path))))
    with pytest.raises(json.JSONDecodeError):  # the 2nd write already reads the glued line
        study.set_user_attr("first", 1)
        study.set_user_attr("second", 2)
        optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(path))))


def test_tuners_backend_cuts_the_torn_line_and_keeps_its_bytes(tmp_path, capfd):
    path = tmp_path / "optuna.journal"
    _study_with_a_torn_last_line(path, GuardedJournalFile)
    torn = path.read_bytes()[path.read_bytes().rfind(b"\n") + 1:]
    study = optuna.load_study(study_name="s", storage=JournalStorage(GuardedJournalFile(str(path))))
    study.set_user_attr("first", 1)
    study.set_user_attr("second", 2)
    again = optuna.load_study(study_name="s",
                              storage=JournalStorage(GuardedJournalFile(str(path))))
    assert again.user_attrs == {"first": 1, "second": 2}
    # The third trial's end was the torn record: it is RUNNING, for a reaper to repeat.
    assert [t.state for t in again.trials] == [TrialState.COMPLETE] * 2 + [TrialState.RUNNING]
    [kept] = tmp_path.glob("optuna.journal.torn-*")
    assert kept.read_bytes() == torn
    err = capfd.readouterr().err
    assert f"{path} ended in {len(torn)} bytes of a record cut short" in err and str(kept) in err


def test_a_garbage_tail_is_cut_back_whatever_its_length(tmp_path):
    path = tmp_path / "optuna.journal"
    optuna.create_study(study_name="s", storage=JournalStorage(GuardedJournalFile(str(path))))
    whole = path.read_bytes()
    path.write_bytes(whole + b"\x00" * 200_000 + b"\nnot json\n")
    study = optuna.load_study(study_name="s", storage=JournalStorage(GuardedJournalFile(str(path))))
    study.set_user_attr("after", 1)
    assert path.read_bytes().startswith(whole) and b"\x00" not in path.read_bytes()


def test_a_sweep_killed_mid_write_is_finished_by_the_rerun(tmp_path):
    """SIGKILL a sweep mid-trial and cut its journal's last record in half, as a crash
    mid-write leaves it: the rerun says what it cut and finishes the study. (A garbage
    tail is cut the same way: test_a_garbage_tail_is_cut_back_whatever_its_length.)"""
    run_dir = tmp_path / "runs"
    journal = run_dir / "optuna.journal"
    args = ("sweep", "n_trials=6", *FAST, "trainer.max_epochs=30", "pruner=none")
    process = subprocess.Popen([*tuner_command(), *args], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 120
    while not _a_trial_reported(run_dir):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    wait_until_gone(process.pid)
    data = journal.read_bytes()
    journal.write_bytes(data[:data.rstrip(b"\n").rfind(b"\n") + 40])
    result = tuner_here(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bytes of a record cut short" in result.stderr
    assert list(run_dir.glob("optuna.journal.torn-*"))
    trials = load_study(run_dir).trials
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 6
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    best = tuner_here("best", cwd=tmp_path)
    assert best.returncode == 0, best.stderr


def _a_trial_reported(run_dir: Path) -> bool:
    try:
        return any(t.intermediate_values for t in load_study(run_dir).trials)
    except (KeyError, FileNotFoundError, ValueError):
        return False


HOLD_AND_DIE = """
import os, signal, sys
from tuner.study.journal_file import GuardedJournalFile
GuardedJournalFile(sys.argv[1]).lock.acquire()
os.kill(os.getpid(), signal.SIGKILL)  # killed while it holds the journal's lock
"""


def test_a_writer_killed_while_it_holds_the_journal_lock_holds_up_no_one(tmp_path):
    """Optuna's own locks outlive a killed holder: the next command waited their 30 s
    grace period, with three warnings. tuner's lock is a flock the kernel lets go."""
    import sys

    path = tmp_path / "optuna.journal"
    optuna.create_study(study_name="s", storage=JournalStorage(GuardedJournalFile(str(path))))
    died = subprocess.run([sys.executable, "-c", HOLD_AND_DIE, str(path)])
    assert died.returncode == -signal.SIGKILL
    start = time.monotonic()
    opened = subprocess.run(
        [sys.executable, "-c", "import sys, optuna; from optuna.storages import JournalStorage; "
         "from tuner.study.journal_file import GuardedJournalFile; optuna.load_study("
         "study_name='s', storage=JournalStorage(GuardedJournalFile(sys.argv[1])))"
         ".set_user_attr('after', 1)", str(path)], capture_output=True, text=True)
    assert opened.returncode == 0, opened.stderr
    assert time.monotonic() - start < 15  # Optuna's symlink lock: 30 s and more
    assert "lock file" not in opened.stderr, opened.stderr
    study = optuna.load_study(study_name="s", storage=JournalStorage(GuardedJournalFile(str(path))))
    assert study.user_attrs == {"after": 1}

"""What tuner takes from libraries' private parts is still there (tuner.core.upstream).

Each test names the function of tuner.core.upstream whose assumption a release broke:
the fix starts there.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import optuna
import pytest

from tests.conftest import plan
from tuner.core import upstream


def test_storage_of_and_trial_id_of_reach_optunas_handles():
    study = optuna.create_study()
    trial = study.ask()
    assert isinstance(upstream.storage_of(study), optuna.storages.BaseStorage), "storage_of"
    frozen = study.trials[0]
    assert upstream.trial_id_of(trial) == upstream.trial_id_of(frozen), "trial_id_of"
    assert upstream.storage_of(study).get_trial(upstream.trial_id_of(trial)).number == 0


def test_refresh_cached_attrs_changes_what_the_handle_reads():
    trial = optuna.create_study().ask()
    upstream.refresh_cached_attrs(trial, {"seed": 7}, {"config": "a: 1"})
    assert trial.user_attrs.get("seed") == 7, (
        "refresh_cached_attrs: Trial no longer reads user_attrs from _cached_frozen_trial")


def test_journal_append_attrs_writes_what_optuna_reads_back(tmp_path):
    path = str(tmp_path / "optuna.journal")

    def journal():
        return optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(path))

    study = optuna.create_study(storage=journal(), study_name="s")
    trial = study.ask()
    storage = upstream.storage_of(study)
    assert upstream.journal_append_attrs(
        storage, upstream.trial_id_of(trial), {"a": 1, "b": "two"}, {"s": [1, 2]}), (
        "journal_append_attrs: a private part of JournalStorage moved; tuner now "
        "writes one line per attribute")
    stored = storage.get_trial(upstream.trial_id_of(trial))
    assert stored.user_attrs == {"a": 1, "b": "two"} and stored.system_attrs == {"s": [1, 2]}
    again = optuna.load_study(study_name="s", storage=journal())  # another process's view
    assert again.trials[0].user_attrs == {"a": 1, "b": "two"}
    assert again.trials[0].system_attrs == {"s": [1, 2]}
    study.tell(trial, 1.0)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        upstream.journal_append_attrs(storage, upstream.trial_id_of(trial), {"c": 3}, {"d": 4})


def test_the_callback_plugin_scan_is_cached_and_trainers_still_build():
    import lightning.pytorch as pl
    from lightning.fabric.utilities import registry

    upstream.cache_callback_plugin_scan()
    assert hasattr(registry.entry_points, "cache_info"), (
        "cache_callback_plugin_scan: lightning.fabric.utilities.registry.entry_points moved")
    pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)


def test_lightnings_subprocess_launcher_keeps_its_rank_processes():
    from lightning.fabric.plugins.environments import LightningEnvironment
    from lightning.pytorch.strategies.launchers.subprocess_script import (
        _SubprocessScriptLauncher,
    )

    launcher = _SubprocessScriptLauncher(LightningEnvironment(), num_processes=2, num_nodes=1)
    assert hasattr(launcher, "procs"), (
        "launched_rank_processes: Lightning's launcher no longer keeps .procs")


def test_lightning_still_sets_the_hook_name_that_fast_hook_name_sets_cheaply(tmp_path):
    from tuner.trial.build import build_objects, build_trainer

    cfg = plan("trainer.max_epochs=1", run_dir=tmp_path / "runs").trial_config({})
    datamodule, module = build_objects(cfg)
    assert isinstance(module, upstream.FastHookName)
    seen: list[object] = []
    original = upstream.FastHookName.__setattr__

    def spy(self, name, value):
        if name == upstream.HOOK_NAME_ATTRIBUTE:
            seen.append(value)
        original(self, name, value)

    type(module).__setattr__ = spy
    try:
        build_trainer(cfg.trainer, fast_dev_run=1).fit(module, datamodule=datamodule)
    finally:
        del type(module).__setattr__
    assert "training_step" in seen, (
        "FastHookName: Lightning no longer records its hook in _current_fx_name")


def test_mlflows_requirement_check_is_where_export_checks_answers_it():
    found = upstream.mlflow_requirement_check()
    assert found is not None, (
        "mlflow_requirement_check: mlflow.utils.requirements_utils."
        "_check_requirement_satisfied moved; exports pay MLflow's full check again")


def test_run_exit_handlers_runs_what_atexit_holds():
    script = textwrap.dedent("""
        import atexit
        from tuner.core.exits import exit_quickly
        atexit.register(lambda: print("handler ran", flush=True))
        exit_quickly(3)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 3
    assert "handler ran" in result.stdout, "run_exit_handlers: atexit._run_exitfuncs moved"


def test_mlflows_default_experiment_folder_is_one_row_of_its_experiments_table(tmp_path):
    from mlflow import MlflowClient
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = tmp_path / "mlflow.db"
    SqlAlchemyStore(f"sqlite:///{store}", str(tmp_path / "elsewhere")).engine.dispose()
    upstream.set_mlflow_default_artifact_folder(store, tmp_path / "here" / "0")
    [default] = MlflowClient(f"sqlite:///{store}").search_experiments()
    assert default.artifact_location == str(tmp_path / "here" / "0"), (
        "set_mlflow_default_artifact_folder: MLflow's experiments table changed")


def test_optunas_storage_cache_reaches_its_backend_only_through_the_methods_tuner_wraps():
    import inspect
    import re

    from optuna.storages import _cached_storage

    called = set(re.findall(r"self\._backend\.(_\w+)", inspect.getsource(_cached_storage)))
    missing = called - set(upstream.CACHED_STORAGE_CALLS)
    assert not missing, (f"CACHED_STORAGE_CALLS: Optuna's _CachedStorage now also calls "
                         f"{missing}; add them, or an outage there ends the sweep")


def test_trainer_arguments_are_lightnings_own_list():
    """tuner.config.trainer_checks lists Trainer's arguments so that the driver need not
    import Lightning to check ``trainer:``; a release that adds or drops one shows here."""
    import inspect

    import lightning.pytorch as pl

    from tuner.config.trainer_checks import TRAINER_ARGUMENTS

    lightning_has = [p for p in inspect.signature(pl.Trainer.__init__).parameters
                     if p != "self"]
    assert sorted(TRAINER_ARGUMENTS) == sorted(lightning_has), (
        "TRAINER_ARGUMENTS: add " + str(sorted(set(lightning_has) - set(TRAINER_ARGUMENTS)))
        + ", drop " + str(sorted(set(TRAINER_ARGUMENTS) - set(lightning_has))))


def _sleep() -> None:
    import time

    time.sleep(60)


def test_two_threads_read_a_killed_slots_exit_code_through_the_guard():
    """python/cpython#130895: two threads reading a dead forkserver child's exit code at
    once, one of them recorded 255 over the right code now and then; the same race fails
    this test without the guard. tuner.launch.reaping takes one lock for every such read
    and every start of a process."""
    import multiprocessing as mp
    import os
    import signal
    import threading
    from multiprocessing.connection import wait

    from tuner.launch import reaping

    context = mp.get_context("forkserver")

    def read(barrier, how, process):
        barrier.wait()
        how(process)

    for _ in range(40):
        process = context.Process(target=_sleep)
        reaping.start(process)
        os.kill(process.pid, signal.SIGKILL)
        wait([process.sentinel])
        barrier = threading.Barrier(3)
        threads = [threading.Thread(target=read, args=(barrier, how, process)) for how in (
            reaping.exit_code, reaping.alive, lambda p: reaping.wait_for_exit(p, 1))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert reaping.exit_code(process) == -signal.SIGKILL

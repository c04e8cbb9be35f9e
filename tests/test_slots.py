"""Worker slots: trials in separate processes, an exact budget, crashes that end one trial."""

from __future__ import annotations

import io
import itertools
import os
import signal
import socket
import subprocess
import time

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.trial import TrialState

from tests.conftest import (
    FAST,
    FIXTURE_CONF,
    client_for,
    compose,
    fixtures_env,
    load_study,
    orphan_trial,
    plan,
    sweep,
    trial_runs,
    tuner_command,
    tuner_here,
    wait_until_gone,
)
from tuner import PlainReporter, run_sweep
from tuner.config.machine import SLOT_MEMORY, available_memory, cpu_cores, slot_specs
from tuner.core import attrs
from tuner.core.errors import ConfigError
from tuner.study.trial_attrs import trial_attr
from tuner.tracking import tags


def assert_budget_invariant(study: optuna.Study, n_trials: int) -> None:
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == n_trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))


def test_two_workers_finish_exactly_n_trials_with_one_run_each(tmp_path):
    run_dir = tmp_path / "runs"
    outcome = sweep("n_trials=8", "slots=2", run_dir=run_dir)
    assert_budget_invariant(outcome.study, 8)
    runs = trial_runs(run_dir, "digits-mlp")
    by_number = {}
    for run in runs:
        by_number.setdefault(run.data.tags[tags.TRIAL_NUMBER], []).append(run)
    assert sorted(by_number, key=int) == [str(t.number) for t in outcome.study.trials]
    assert all(len(v) == 1 for v in by_number.values())
    assert {r.info.status for r in runs} == {"FINISHED"}
    # Two processes trained: each trial records the slot process that owned it.
    owners = {trial_attr(t, attrs.OWNER_ATTR) for t in outcome.study.trials}
    assert len(owners) == 2
    assert all(o.startswith(socket.gethostname() + ":") for o in owners)


def test_slots_train_without_mlflow_and_the_driver_writes_their_runs(tmp_path):
    """Every trial logs, from inside its slot, whether MLflow is imported there: never.
    Its run still has everything a slot used to write itself."""
    run_dir = tmp_path / "runs"
    outcome = sweep("n_trials=4", "slots=2", "model=probe_mlp", "tracking.log_models=true",
                    run_dir=run_dir, config_dir=FIXTURE_CONF)
    assert_budget_invariant(outcome.study, 4)
    client = client_for(run_dir)
    runs = trial_runs(run_dir, "digits-probe_mlp")
    assert len(runs) == 4
    for run in runs:
        imported = client.get_metric_history(run.info.run_id, "mlflow_imported")
        assert len(imported) == 2 and {m.value for m in imported} == {0.0}
        assert run.info.status == "FINISHED"
        assert {"model.lr", "seed"} <= set(run.data.params)
        assert len(client.get_metric_history(run.info.run_id, "val_loss")) == 2
        assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["config.yaml"]
    assert outcome.summary.champion is not None  # the best model, exported at the end


def test_a_driver_killed_mid_trial_loses_none_of_its_slots_records(tmp_path):
    """The driver writes its slots' records; SIGKILL it while a trial trains, and the slot
    writes what the driver had not, then ends the trial: every epoch that Optuna heard of
    is in the run, and the run is KILLED, not left RUNNING."""
    run_dir = tmp_path / "runs"
    process = subprocess.Popen(
        [*tuner_command(), "sweep", "--config-dir", str(FIXTURE_CONF), "model=slow_mlp",
         "search=width_only", "n_trials=1", "trainer.max_epochs=50", "pruner=none",
         "slots=1", "tracking.report=false", "tracking.flush_interval=0.5"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, env={**os.environ, **fixtures_env()})
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.5)
            if (run_dir / "optuna.journal").exists():
                try:
                    trials = load_study(run_dir, "digits-slow_mlp").trials
                except KeyError:  # the journal exists a moment before the study
                    continue
                if trials and len(trials[0].intermediate_values) >= 3:
                    break
        else:
            raise AssertionError("the trial never reported three epochs")
        os.kill(process.pid, signal.SIGKILL)  # the driver only: its slot lives on
        process.wait()
        wait_until_gone(process.pid)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    [trial] = load_study(run_dir, "digits-slow_mlp").trials
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs[attrs.FAIL_REASON_ATTR].startswith("interrupted")
    client = client_for(run_dir)
    run = client.get_run(trial.user_attrs[attrs.RUN_ID_ATTR])
    assert run.info.status == "KILLED"
    assert {"model.width", "seed"} <= set(run.data.params)
    val = client.get_metric_history(run.info.run_id, "val_loss")
    assert len(val) >= len(trial.intermediate_values) >= 3


@pytest.mark.parametrize("how", ["segfault", "sigkill"])
def test_a_trial_that_kills_its_process_fails_alone(how, tmp_path):
    run_dir = tmp_path / "runs"
    outcome = sweep("n_trials=5", "slots=2", "model=crashing_mlp", f"model.how={how}",
                    "search=width_only", "sampler=random", "max_failures=0",
                    run_dir=run_dir, config_dir=FIXTURE_CONF)
    assert_budget_invariant(outcome.study, 5)
    crashed = [t for t in outcome.study.trials if t.state == TrialState.FAIL]
    assert crashed, "no trial sampled the crashing width"
    signal_name = {"segfault": "SIGSEGV", "sigkill": "SIGKILL"}[how]
    runs = {r.data.tags[tags.TRIAL_NUMBER]: r for r in trial_runs(run_dir, "digits-crashing_mlp")}
    for trial in crashed:
        assert trial.params["model.width"] == 512
        reason = trial.user_attrs[attrs.FAIL_REASON_ATTR]
        assert reason == f"slot process killed by {signal_name} while training"
        run = runs[str(trial.number)]
        # Killed from outside (the OOM killer's SIGKILL) reads KILLED; a crash, FAILED.
        assert run.info.status == ("KILLED" if how == "sigkill" else "FAILED")
        assert run.data.tags[tags.FAIL_REASON] == reason
    # Every trial that did not crash completed, in replacement slots as needed.
    assert all(t.params["model.width"] == 64 for t in outcome.study.trials
               if t.state != TrialState.FAIL)


def test_trial_left_running_by_a_dead_process_is_reaped(tmp_path):
    """A RUNNING trial whose process died (here: a process that exited) is marked FAIL
    and its run KILLED by the next sweep, which then tops the study up."""
    run_dir = tmp_path / "runs"
    sweep("n_trials=2", run_dir=run_dir)
    orphan, params, run_id = orphan_trial(run_dir)
    client = client_for(run_dir)

    outcome = sweep("n_trials=3", run_dir=run_dir)
    assert_budget_invariant(outcome.study, 3)
    reaped = outcome.study.trials[orphan.number]
    assert reaped.state == TrialState.FAIL
    assert reaped.user_attrs[attrs.FAIL_REASON_ATTR].startswith("abandoned: its process")
    assert client.get_run(run_id).info.status == "KILLED"
    # Cut short from outside: repeated with the same params, whatever retry_failed says.
    [repeat] = [t for t in outcome.study.trials
                if t.user_attrs.get(attrs.RETRY_OF_ATTR) == orphan.number]
    assert repeat.params == params and repeat.state == TrialState.COMPLETE
    assert repeat.user_attrs[attrs.SEED_ATTR] == 0 + orphan.number  # seed=0 + first number


def test_cpu_slots_split_the_cores(tmp_path):
    specs = slot_specs(compose("slots=2", run_dir=tmp_path).cfg)
    assert [s.index for s in specs] == [0, 1]
    assert all(s.gpus is None and s.threads >= 1 for s in specs)
    one = slot_specs(compose("slots=1", run_dir=tmp_path).cfg)
    assert len(one) == 1 and one[0].threads == cpu_cores()


def test_auto_runs_a_slot_per_core_but_never_more_than_trials(tmp_path):
    cores = cpu_cores()
    auto = slot_specs(compose(f"n_trials={cores + 5}", run_dir=tmp_path).cfg)
    assert len(auto) == min(cores, available_memory() // SLOT_MEMORY)
    assert all(s.threads == max(1, cores // len(auto)) for s in auto)
    assert len(slot_specs(compose("n_trials=1", run_dir=tmp_path).cfg)) == 1
    ddp = slot_specs(compose(f"n_trials={cores + 5}", "devices_per_trial=2",
                             "trainer.devices=2", "trainer.strategy=ddp",
                             run_dir=tmp_path).cfg)
    assert len(ddp) == max(1, min(cores // 2, available_memory() // (2 * SLOT_MEMORY)))


@pytest.mark.skipif(cpu_cores() < 2, reason="needs two cores for two slots")
def test_the_default_sweep_trains_on_every_core(tmp_path):
    """slots=auto, the default, as the README's first command runs it: on this
    machine's cores, two trials train at once (each slot records itself as the owner)."""
    # Trials long enough (5 epochs, several seconds in all) that the second slot, which
    # opens its MLflow client only on the go, is up before the first could train them all.
    result = tuner_here("sweep", "n_trials=6", "trainer.max_epochs=5", "pruner=none",
                       "tracking.report=false", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    study = load_study(tmp_path / "runs", "digits-mlp")
    assert len(study.trials) == 6
    assert len({trial_attr(t, attrs.OWNER_ATTR) for t in study.trials}) >= 2
    spans = sorted((t.datetime_start, t.datetime_complete) for t in study.trials)
    assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans)), \
        "no two trials trained at the same time"


def test_gpu_slots_get_disjoint_devices(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    gpu = ("trainer.accelerator=gpu",)
    pairs = slot_specs(compose(*gpu, "devices_per_trial=2", run_dir=tmp_path).cfg)
    assert [s.gpus for s in pairs] == [("0", "1"), ("2", "3")]
    packed = slot_specs(compose(*gpu, "slots_per_gpu=3", run_dir=tmp_path).cfg)
    assert len(packed) == 12
    assert [s.gpus for s in packed[:4]] == [("0",), ("1",), ("2",), ("3",)]
    for gpu_id in "0123":
        assert sum(s.gpus == (gpu_id,) for s in packed) == 3
    two = slot_specs(compose(*gpu, "slots=2", "slots_per_gpu=2", run_dir=tmp_path).cfg)
    assert [s.gpus for s in two] == [("0",), ("1",)]  # spread before packing


def test_more_gpu_slots_than_gpus_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with pytest.raises(ConfigError) as excinfo:
        plan("trainer.accelerator=gpu", "slots=3", run_dir=tmp_path / "runs")
    assert "slots=3 but 2 GPU(s) hold 2 slot(s)" in str(excinfo.value)


@pytest.mark.parametrize(("overrides", "says"), [
    (("slots=0",), "slots: must be a positive number or auto"),
    (("slots=many",), "slots: must be a positive number or auto"),
    (("devices_per_trial=0",), "devices_per_trial: must be at least 1"),
    (("trainer.accelerator=gpu",), "this machine has no visible GPU"),
    (("trainer.devices=2",), "set devices_per_trial=2 instead of trainer.devices"),
    (("trainer.num_nodes=2",), "run `tuner worker` under torchrun or srun"),
])
def test_bad_slot_settings_are_refused(overrides, says, tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # as on a machine without GPUs
    with pytest.raises(ConfigError) as excinfo:
        plan(*overrides, run_dir=tmp_path / "runs")
    assert says in str(excinfo.value)
    assert not (tmp_path / "runs").exists()


def test_preflight_failure_in_a_slot_writes_nothing(tmp_path):
    run_dir = tmp_path / "runs"
    with pytest.raises(ConfigError) as excinfo:
        run_sweep(plan(*FAST, "metric=val_accuracy", "slots=2", run_dir=run_dir),
                  PlainReporter(io.StringIO()))
    assert "'val_accuracy' is not logged" in str(excinfo.value)
    assert excinfo.value.problems[0].key == "metric"
    assert not run_dir.exists()


def test_trial_config_records_no_password(tmp_path):
    """A password written into a storage URL never reaches a record tuner writes."""
    from tuner.core.masking import mask

    cfg = compose("storage=sqlite", "storage.url=postgresql://me:hunter2@db/x",
                  run_dir=tmp_path).cfg
    text = mask(OmegaConf.to_yaml(cfg))
    assert "hunter2" not in text and "postgresql://me:***@db/x" in text


@pytest.mark.gpu
def test_packed_gpu_slots_share_one_gpu_and_train_in_bf16(tmp_path, monkeypatch):
    """Two slots packed onto GPU 0 (slots_per_gpu=2), bf16: both train trials at once."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    outcome = sweep("trainer=gpu", "slots_per_gpu=2", "n_trials=6", run_dir=tmp_path / "runs")
    assert_budget_invariant(outcome.study, 6)
    assert len({trial_attr(t, attrs.OWNER_ATTR) for t in outcome.study.trials}) == 2
    config = OmegaConf.create(trial_attr(outcome.study.trials[0], attrs.CONFIG_ATTR))
    assert config.trainer.precision == "bf16-mixed"

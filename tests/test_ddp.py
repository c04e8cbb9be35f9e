"""DDP inside a trial, on CPU with the gloo backend: two ranks, one trial, one run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from optuna.trial import TrialState

from tests.conftest import FIXTURE_CONF, client_for, load_study, sweep, trial_runs
from tests.servers import free_port
from tuner.core import attrs
from tuner.data.batches import TensorBatches
from tuner.study.trial_attrs import trial_attr
from tuner.tracking import tags
from tuner.tracking.registry import current_champion

DDP = ("devices_per_trial=2", "trainer.accelerator=cpu", "n_trials=1", "search=width_only",
       "tracking.log_models=false")


def ranks_of(run_dir: Path, run_id: str) -> list[dict]:
    path = client_for(run_dir).download_artifacts(run_id, "ranks.json")
    return json.loads(Path(path).read_text())


def test_a_two_process_trial_is_one_trial_and_one_run_logged_by_rank_0(tmp_path):
    run_dir = tmp_path / "runs"
    # Models on: rank 0 keeps the new best's weights, the slot exports them at the end.
    outcome = sweep(*DDP, "trainer.max_epochs=3", "pruner=none", "tracking.log_models=true",
                    run_dir=run_dir, config_dir=FIXTURE_CONF)
    trials = outcome.study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE]
    assert trials[0].user_attrs[attrs.WORLD_SIZE_ATTR] == 2
    assert len(trials[0].intermediate_values) == 3  # one report per epoch, from rank 0 only
    runs = trial_runs(run_dir, "digits-mlp")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.tags[tags.WORLD_SIZE] == "2"
    history = client_for(run_dir).get_metric_history(run.info.run_id, "val_acc")
    assert [m.step for m in history] == sorted({m.step for m in history})  # no duplicates
    assert len(history) == 3
    assert history[-1].value == trials[0].values[0]
    ranks = ranks_of(run_dir, run.info.run_id)
    assert [r["rank"] for r in ranks] == [0, 1]
    assert {r["world_size"] for r in ranks} == {2}
    assert ranks[0]["global_step"] == ranks[1]["global_step"] > 0
    kept = Path(trial_attr(trials[0], attrs.MODEL_WEIGHTS_ATTR))
    assert kept.parent == (run_dir / "trials" / "digits-mlp" / "0").resolve()
    assert not kept.exists()  # exported, so no longer kept
    [model] = client_for(run_dir).search_logged_models([run.info.experiment_id])
    assert model.source_run_id == run.info.run_id
    assert current_champion(client_for(run_dir), "digits-mlp").run_id == run.info.run_id


def test_a_pruned_ddp_trial_stops_both_ranks_after_the_same_epoch(tmp_path):
    run_dir = tmp_path / "runs"
    # val_acc is always below 1.5: the threshold pruner stops the trial after epoch 1.
    outcome = sweep(*DDP, "trainer.max_epochs=4", "pruner=threshold", "pruner.lower=1.5",
                    run_dir=run_dir, config_dir=FIXTURE_CONF)
    [trial] = outcome.study.trials
    assert trial.state == TrialState.PRUNED
    assert list(trial.intermediate_values) == [1]
    [run] = trial_runs(run_dir, "digits-mlp")
    assert run.data.tags[tags.PRUNED_AT_EPOCH] == "1"
    ranks = ranks_of(run_dir, run.info.run_id)
    assert [r["pruned_at"] for r in ranks] == [1, 1]
    assert ranks[0]["global_step"] == ranks[1]["global_step"]
    assert ranks[0]["epochs"] == ranks[1]["epochs"] == 1  # not the 4 it would have run


def test_ranks_train_on_disjoint_equal_shards():
    x = torch.arange(103)
    torch.manual_seed(7)
    shard0 = torch.cat([b[0] for b in TensorBatches(x, batch_size=8, shuffle=True,
                                                    rank=0, world_size=2)])
    torch.manual_seed(7)
    shard1 = torch.cat([b[0] for b in TensorBatches(x, batch_size=8, shuffle=True,
                                                    rank=1, world_size=2)])
    assert len(shard0) == len(shard1) == 51  # the odd row out is dropped on every rank
    assert not set(shard0.tolist()) & set(shard1.tolist())
    assert len(TensorBatches(x, batch_size=8, rank=1, world_size=2)) == 7


def test_tuner_worker_under_torchrun_trains_each_trial_across_two_nodes(tmp_path):
    """Two torchrun "nodes" on this machine (one process each, gloo): every trial the
    worker trains is one Optuna trial and one MLflow run, trained by both ranks."""
    from tests.conftest import run_tuner

    common = ("trainer.max_epochs=2", "trainer.accelerator=cpu", "tracking.report=false",
              "search=width_only")
    started = run_tuner("sweep", "n_trials=1", *common, "--config-dir", str(FIXTURE_CONF),
                        cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    port = str(free_port())
    nodes = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank",
         str(rank), "--nproc-per-node", "1", "--master-addr", "127.0.0.1", "--master-port",
         port, "-m", "tuner", "worker", "n_trials=3", *common, "--config-dir",
         str(FIXTURE_CONF)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True) for rank in (0, 1)]
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    assert "worker done (budget): trained 2 trial(s) here" in outputs[0]

    run_dir = tmp_path / "runs"
    study = load_study(run_dir)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    runs = {r.data.tags[tags.TRIAL_NUMBER]: r for r in trial_runs(run_dir, "digits-mlp")}
    assert sorted(runs) == ["0", "1", "2"]
    for number in ("1", "2"):
        assert runs[number].data.tags[tags.WORLD_SIZE] == "2"
        ranks = ranks_of(run_dir, runs[number].info.run_id)
        assert [(r["rank"], r["world_size"]) for r in ranks] == [(0, 2), (1, 2)]
        assert ranks[0]["global_step"] == ranks[1]["global_step"] > 0


def test_gradient_accumulation_steps_as_in_one_process(tmp_path):
    """Two ranks with batch 32 each accumulating two batches per optimizer step take as
    many steps as one process with batch 64 does (1437 training rows: 23 batches, 12
    steps an epoch); if a rank ignored the accumulation it would take 23. Clipping is on
    in both; its value is not compared here."""
    common = ("trainer.accelerator=cpu", "n_trials=1", "search=width_only",
              "tracking.log_models=false", "trainer.max_epochs=2", "pruner=none",
              "trainer.accumulate_grad_batches=2", "trainer.gradient_clip_val=0.5")
    steps = {}
    for name, overrides in (("ddp", ("devices_per_trial=2", "data.batch_size=32")),
                            ("one", ("devices_per_trial=1", "data.batch_size=64"))):
        run_dir = tmp_path / name
        sweep(*common, *overrides, run_dir=run_dir, config_dir=FIXTURE_CONF)
        [run] = trial_runs(run_dir, "digits-mlp")
        history = client_for(run_dir).get_metric_history(run.info.run_id, "val_acc")
        steps[name] = [m.step for m in sorted(history, key=lambda m: m.step)]
        if name == "ddp":
            assert [r["global_step"] for r in ranks_of(run_dir, run.info.run_id)] == [24, 24]
    # Both trained 12 optimizer steps an epoch (the ranks' global step, 24 after 2 epochs),
    # and per-epoch metrics are stepped by epochs trained in both.
    assert steps["ddp"] == steps["one"] == [1, 2]

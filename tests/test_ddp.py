"""DDP inside a trial, on CPU with the gloo backend: two ranks, one trial, one run."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from optuna.trial import TrialState

from tests.conftest import FIXTURE_CONF, client_for, sweep, trial_runs
from tuner.data.batches import TensorBatches
from tuner.tracking import tags

DDP = ("devices_per_trial=2", "trainer.accelerator=cpu", "n_trials=1", "search=width_only",
       "tracking.log_models=false")


def ranks_of(run_dir: Path, run_id: str) -> list[dict]:
    path = client_for(run_dir).download_artifacts(run_id, "ranks.json")
    return json.loads(Path(path).read_text())


def test_a_two_process_trial_is_one_trial_and_one_run_logged_by_rank_0(tmp_path):
    run_dir = tmp_path / "runs"
    outcome = sweep(*DDP, "trainer.max_epochs=3", "pruner=none", run_dir=run_dir,
                    config_dir=FIXTURE_CONF)
    trials = outcome.study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE]
    assert trials[0].user_attrs[tags.WORLD_SIZE_ATTR] == 2
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

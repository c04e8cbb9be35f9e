"""MLflow records: metrics go in batches; the parent run and leaderboard stay truthful."""

from __future__ import annotations

import math

import optuna
from mlflow import MlflowClient
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from tests.conftest import plan
from tuner.app.pages.study_page import leaderboard
from tuner.app.report import _log_parent
from tuner.tracking import tags
from tuner.tracking.metric_rows import log_metric_rows, logged_steps
from tuner.tracking.runs import Tracker
from tuner.trial.metrics_logger import BatchLogger


class CountingClient(MlflowClient):
    """A real MLflow client (real SQLite store) that counts its log_batch requests."""

    def __init__(self, uri: str):
        super().__init__(uri)
        self.batches = 0

    def log_batch(self, *args, **kwargs):
        self.batches += 1
        return super().log_batch(*args, **kwargs)


def logger_for(client: MlflowClient, run_id: str, flush_interval: float,
               resumed: bool = False) -> BatchLogger:
    """A trial's logger whose batches are written as the driver writes its slots'."""
    return BatchLogger(lambda rows: log_metric_rows(client, run_id, rows), flush_interval,
                       logged_steps(client, run_id) if resumed else None)


def test_metrics_are_written_in_batches_not_per_call(tmp_path):
    client = CountingClient(f"sqlite:///{tmp_path}/mlflow.db")
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    logger = logger_for(client, run_id, flush_interval=3600)
    for step in range(300):  # 300 steps x 2 metrics
        logger.log_metrics({"train_loss": 1.0 / (step + 1), "lr": 0.1}, step=step)
    assert client.batches == 0  # nothing written while training
    logger.finalize("success")
    assert client.batches == 1  # 600 values, one request
    history = client.get_metric_history(run_id, "train_loss")
    assert len(history) == 300 and [m.step for m in history] == list(range(300))


def test_logger_flushes_on_interval_and_batch_limit(tmp_path):
    client = CountingClient(f"sqlite:///{tmp_path}/mlflow.db")
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    logger = logger_for(client, run_id, flush_interval=0.0)
    logger.log_metrics({"a": 1.0}, step=0)
    assert client.batches == 1  # interval elapsed: written
    big = logger_for(client, run_id, flush_interval=3600)
    big.log_metrics({f"m{i}": float(i) for i in range(1200)}, step=0)
    assert client.batches == 3  # 1000 per request at most
    big.finalize("success")
    assert len(client.get_run(run_id).data.metrics) == 1201


def test_a_resumed_run_gets_no_step_twice(tmp_path):
    """The attempt cut short logged epochs 0..4 (val) and 0..3 (train); the repeat
    resumes after epoch 2 and logs 3..5: each metric keeps one value per step."""
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    killed = logger_for(client, run_id, flush_interval=3600)
    for epoch in range(5):
        killed.log_metrics({"val_loss": 10.0 + epoch}, step=epoch)
        if epoch < 4:
            killed.log_metrics({"train_loss": 10.0 + epoch}, step=epoch)
    killed.finalize("failed")
    repeat = logger_for(client, run_id, flush_interval=3600, resumed=True)
    for epoch in range(3, 6):
        repeat.log_metrics({"val_loss": 20.0 + epoch, "train_loss": 20.0 + epoch}, step=epoch)
    repeat.finalize("success")
    val = client.get_metric_history(run_id, "val_loss")
    assert sorted((m.step, m.value) for m in val) == [
        (0, 10.0), (1, 11.0), (2, 12.0), (3, 13.0), (4, 14.0), (5, 25.0)]
    train = client.get_metric_history(run_id, "train_loss")
    assert sorted((m.step, m.value) for m in train) == [
        (0, 10.0), (1, 11.0), (2, 12.0), (3, 13.0), (4, 24.0), (5, 25.0)]


def _trial(state, value=None, intermediate=None, params=None):
    return create_trial(state=state, value=value, params=params or {"model.lr": 0.1},
                        distributions={"model.lr": FloatDistribution(0.0, 1.0)},
                        intermediate_values=intermediate or {})


def test_leaderboard_ranks_complete_then_pruned_with_nan_last():
    study = optuna.create_study(direction="minimize")
    study.add_trial(_trial(TrialState.PRUNED, intermediate={1: math.nan}))
    study.add_trial(_trial(TrialState.COMPLETE, value=0.5))
    study.add_trial(_trial(TrialState.PRUNED, intermediate={1: 0.3}))
    study.add_trial(_trial(TrialState.COMPLETE, value=0.2))
    study.add_trial(_trial(TrialState.FAIL))
    rows = leaderboard(study, ("val_loss",))
    assert [r["trial"] for r in rows] == [3, 1, 2, 0, 4]


def test_parent_run_drops_best_params_the_new_best_lacks(tmp_path):
    sweep_plan = plan(run_dir=tmp_path)
    tracker = Tracker(sweep_plan.cfg.tracking, "stale-tags")
    study = optuna.create_study(direction="maximize")
    tracker.open(study, {})
    counts = {"COMPLETE": 1, "PRUNED": 0, "FAIL": 0}
    sgd = create_trial(state=TrialState.COMPLETE, values=[0.8],
                       params={"model.lr": 0.1, "model.momentum": 0.9},
                       distributions={"model.lr": FloatDistribution(0.0, 1.0),
                                      "model.momentum": FloatDistribution(0.0, 1.0)})
    _log_parent(sweep_plan, tracker, sgd, [], counts)
    adam = _trial(TrialState.COMPLETE, value=0.9, params={"model.lr": 0.2})
    _log_parent(sweep_plan, tracker, adam, [], counts)
    run_tags = tracker.client.get_run(tracker.parent_run_id).data.tags
    assert run_tags[f"{tags.BEST_PARAM_PREFIX}model.lr"] == "0.2"
    assert f"{tags.BEST_PARAM_PREFIX}model.momentum" not in run_tags


def test_a_pruned_trials_run_says_so_in_its_name(tmp_path):
    """MLflow shows a pruned trial's run (FINISHED: it ended by the study's rule) with the
    same mark as a complete one: its name tells them apart in the runs table."""
    tracker = Tracker(plan(run_dir=tmp_path).cfg.tracking, "pruned-names")
    tracker.open(optuna.create_study(direction="maximize"), {})
    pruned, complete = tracker.create_trial_run(0), tracker.create_trial_run(1)
    tracker.end_trial(pruned, TrialState.PRUNED, pruned_at=2, number=0)
    tracker.end_trial(complete, TrialState.COMPLETE, number=1)
    runs = {r.info.run_id: r.info for r in tracker.client.search_runs([tracker.experiment_id])}
    assert (runs[pruned].run_name, runs[pruned].status) == ("trial-0 (pruned)", "FINISHED")
    assert (runs[complete].run_name, runs[complete].status) == ("trial-1", "FINISHED")


def test_per_epoch_metrics_are_stepped_by_epoch_and_per_batch_ones_by_global_step(tmp_path):
    """Lightning logs every row at the optimizer's step: epoch 2 of a trial with 4 batches
    an epoch is step 7, of one with 2 batches step 3, and their curves do not line up."""
    import lightning.pytorch as pl
    import torch

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, index):
            loss = self.layer(batch[0]).pow(2).mean()
            self.log("per_batch", loss, on_step=True, on_epoch=False)
            self.log("train_loss", loss, on_step=False, on_epoch=True)
            return loss

        def validation_step(self, batch, index):
            self.log("val_loss", self.layer(batch[0]).mean(), on_epoch=True)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), 0.1)

    from tuner.trial.build import build_trainer

    data = torch.utils.data.TensorDataset(torch.randn(32, 2))
    steps = {}
    for batch_size in (8, 16):
        rows = []
        logger = BatchLogger(rows.extend, flush_interval=0)
        trainer = build_trainer(plan(run_dir=tmp_path).cfg.trainer, logger=logger,
                                max_epochs=3, log_every_n_steps=1, enable_progress_bar=False)
        loader = torch.utils.data.DataLoader(data, batch_size=batch_size)
        trainer.fit(Module(), loader, loader)
        logger.flush()
        steps[batch_size] = {name: [s for n, _, _, s in rows if n == name]
                             for name in ("val_loss", "train_loss", "per_batch", "epoch")}
    for batch_size, logged in steps.items():
        assert logged["val_loss"] == logged["train_loss"] == [1, 2, 3]  # epochs trained
        batches = 32 // batch_size
        assert logged["per_batch"] == list(range(3 * batches))  # Lightning's global step
        assert logged["epoch"] == logged["per_batch"]  # only beside per-batch rows

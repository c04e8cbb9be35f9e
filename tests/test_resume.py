"""A trial cut short resumes from its last checkpoint, in the same MLflow run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
from optuna.trial import TrialState

from tests.conftest import (
    FIXTURE_CONF,
    client_for,
    fixtures_env,
    load_study,
    orphan_trial,
    plan,
    sweep,
    tuner_command,
    tuner_here,
    wait_until_gone,
)
from tests.servers import free_port
from tuner.core import attrs
from tuner.tracking import tags
from tuner.tracking.breaker import Breaker
from tuner.tracking.outbox import Outbox
from tuner.tracking.runs import Tracker
from tuner.trial.checkpoints import ResumeCheckpoint
from tuner.trial.fit import FitInputs, fit
from tuner.trial.resume import RECORD_FILE, last_checkpoint

STUDY = "digits-slow_mlp"
# One trial of 8 epochs, each slowed to about half a second, a checkpoint every epoch.
SLOW = ("sweep", "n_trials=1", "model=slow_mlp", "search=width_only",
        "search.model.width.choices=[64]", "trainer.max_epochs=8", "resume_checkpoint_s=0",
        "pruner=none", "tracking.report=false", "tracking.flush_interval=0",
        "tracking.log_models=false", "trainer.accelerator=cpu")


def _reported(run_dir: Path) -> int:
    try:
        return len(load_study(run_dir, STUDY).trials[0].intermediate_values)
    except (KeyError, IndexError, FileNotFoundError):  # not created yet
        return 0


@pytest.mark.parametrize("ranks", [1, 2], ids=["one-process", "ddp-two-ranks"])
def test_a_trial_killed_mid_way_resumes_from_its_checkpoint_in_the_same_run(ranks, tmp_path):
    run_dir = tmp_path / "runs"
    checkpoint = run_dir / "trials" / STUDY / "0" / RECORD_FILE  # written once one is whole
    args = (*SLOW, f"devices_per_trial={ranks}", "--config-dir", str(FIXTURE_CONF))
    process = subprocess.Popen([*tuner_command(), *args], cwd=tmp_path,
                               env={**os.environ, **fixtures_env()}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while not (checkpoint.is_file() and _reported(run_dir) >= 3):
        assert process.poll() is None, "the sweep ended before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint after 3 epochs within 120 s"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # the driver and its slot: nobody ends the trial
    process.wait()
    wait_until_gone(process.pid)
    # DDP ranks run in a group of their own; rank 0 notices within a second that its
    # slot is gone and kills them all. Until then they may train, log and save on.
    time.sleep(2 if ranks > 1 else 0)
    rerun_at_ms = time.time() * 1000
    [killed] = load_study(run_dir, STUDY).trials
    assert killed.state == TrialState.RUNNING
    assert checkpoint.is_file()
    run_id = killed.user_attrs[attrs.RUN_ID_ATTR]

    result = tuner_here(*args, cwd=tmp_path, env=fixtures_env())
    assert result.returncode == 0, result.stdout + result.stderr
    first, repeat = load_study(run_dir, STUDY).trials
    assert first.state == TrialState.FAIL
    assert first.user_attrs[attrs.FAIL_REASON_ATTR].startswith("abandoned: its process")
    assert repeat.state == TrialState.COMPLETE
    assert repeat.user_attrs[attrs.RETRY_OF_ATTR] == 0
    resumed = repeat.user_attrs[attrs.RESUMED_FROM_EPOCH_ATTR]
    assert resumed >= 2  # the checkpoint was there once 3 epochs had reported
    # The repeat continued the killed trial's run, and ended it.
    assert repeat.user_attrs[attrs.RUN_ID_ATTR] == run_id
    client = client_for(run_dir)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[tags.RESUMED_FROM_EPOCH] == str(resumed)
    assert run.data.tags[tags.TRIAL_NUMBER] == "1"
    assert tags.FAIL_REASON not in run.data.tags
    assert repeat.user_attrs.get(attrs.WORLD_SIZE_ATTR, 1) == ranks
    # Every epoch once, in order, stepped by epochs trained (1..8).
    history = sorted(client.get_metric_history(run_id, "val_acc"), key=lambda m: m.timestamp)
    assert [m.step for m in history] == list(range(1, 9))
    # The repeat logged no epoch it had resumed past: those came from the killed run.
    by_repeat = [epoch for epoch, m in enumerate(history) if m.timestamp > rerun_at_ms]
    assert by_repeat and min(by_repeat) >= resumed
    # Optuna: the whole curve, the part before the checkpoint inherited as reported.
    assert sorted(repeat.intermediate_values) == list(range(1, 9))
    for step in range(1, resumed + 1):
        assert repeat.intermediate_values[step] == first.intermediate_values[step]
    assert repeat.values[0] == history[-1].value
    assert not checkpoint.exists() and not list(run_dir.glob("trials/**/resume*"))


class CutShort(Exception):
    """Stands in for a kill: training stops mid-way, the checkpoint stays."""


class CutAtEpoch(ResumeCheckpoint):
    def __init__(self, folder: Path, epoch: int):
        super().__init__(folder, every_s=0)
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise CutShort()


def test_a_resumed_fit_ends_exactly_as_an_uninterrupted_one(tmp_path):
    """Weights, optimizer, schedule, counters and random state all come back: the
    shuffling and dropout of the epochs after the checkpoint are the same."""
    cfg = plan("model.lr_schedule=cosine", "model.dropout=0.3", "trainer.max_epochs=4",
               run_dir=tmp_path / "runs").trial_config({})
    inputs = FitInputs(cfg, 7, ("val_loss", "val_acc"), reports_epochs=False, root_dir=tmp_path)
    whole = fit(inputs)
    folder = tmp_path / "chain"
    with pytest.raises(CutShort):
        fit(replace(inputs, checkpoint=CutAtEpoch(folder, 3)))
    path, epochs, problem = last_checkpoint(folder)
    assert (epochs, problem) == (3, None)
    resumed = fit(replace(inputs, checkpoint=ResumeCheckpoint(folder, None), resume_from=path))
    assert resumed.trainer.global_step == whole.trainer.global_step
    assert resumed.outcome.values == whole.outcome.values


def test_rows_the_killed_attempt_took_but_the_run_never_got_are_written_by_the_repeat(
        tmp_path):
    """A kill can catch the last epochs' rows on their way to the run (buffered, or in
    the pipe to the driver) after their checkpoint was saved; the checkpoint carries the
    rows, and the repeat writes those the run lacks: every epoch once, in order."""
    from tuner.trial.metrics_logger import BatchLogger

    cfg = plan("trainer.max_epochs=6", run_dir=tmp_path / "runs").trial_config({})
    inputs = FitInputs(cfg, 7, ("val_acc",), reports_epochs=False, root_dir=tmp_path)
    folder = tmp_path / "chain"
    taken: list = []
    with pytest.raises(CutShort):
        fit(replace(inputs, logger=BatchLogger(taken.extend, flush_interval=0),
                    checkpoint=CutAtEpoch(folder, 4)))
    path, epochs, _ = last_checkpoint(folder)
    assert epochs == 4
    # The run got epochs 1 and 2 of val_acc; epochs 3 and 4 were in flight at the kill.
    run = [row for row in taken if row[0] == "val_acc" and row[3] <= 2]
    repeat: list = []
    fit(replace(inputs, logger=BatchLogger(repeat.extend, 0, {"val_acc": 2}),
                checkpoint=ResumeCheckpoint(folder, None), resume_from=path))
    held = sorted(run + [row for row in repeat if row[0] == "val_acc"], key=lambda r: r[2])
    assert [row[3] for row in held] == [1, 2, 3, 4, 5, 6]
    # Epochs 3 and 4 are the values the killed attempt computed, with their own times.
    assert held[2:4] == [row for row in taken if row[0] == "val_acc" and row[3] in (3, 4)]


class Watched(ResumeCheckpoint):
    """Notes, after each epoch, which record of a checkpoint is there (None: none)."""

    def __init__(self, folder: Path, every_s: float | None):
        super().__init__(folder, every_s)
        self.path = folder / RECORD_FILE
        self.seen: list[tuple[int, int] | None] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self.path.exists():
            stat = self.path.stat()
            self.seen.append((stat.st_ino, stat.st_mtime_ns))
        else:
            self.seen.append(None)


@pytest.mark.parametrize(("every_s", "saves"), [(0, 3), (60, 0), (None, 0)])
def test_checkpoints_are_saved_only_when_due_and_never_after_the_last_epoch(
        every_s, saves, tmp_path):
    cfg = plan("trainer.max_epochs=4", run_dir=tmp_path / "runs").trial_config({})
    watched = Watched(tmp_path / "chain", every_s)
    fit(FitInputs(cfg, 0, ("val_acc",), reports_epochs=False, root_dir=tmp_path,
                  checkpoint=watched))
    # Each save is a new record renamed over the last; the 4th epoch is the last one.
    written = [file for file in watched.seen if file is not None]
    assert len(set(written)) == saves
    if saves:
        assert watched.seen[-1] == watched.seen[-2]
        assert last_checkpoint(watched.folder)[1:] == (3, None)
        # The record names the one checkpoint kept: the older ones are deleted.
        assert [p.name for p in watched.folder.glob("resume-*.ckpt")] == ["resume-3.ckpt"]
    assert not list(tmp_path.glob("**/*.part"))


def test_a_trial_that_ends_leaves_no_checkpoint(tmp_path):
    run_dir = tmp_path / "runs"
    outcome = sweep("n_trials=2", "trainer.max_epochs=3", "resume_checkpoint_s=0",
                    "pruner=none", run_dir=run_dir)
    assert [t.state for t in outcome.study.trials] == [TrialState.COMPLETE] * 2
    assert (run_dir / "trials" / "digits-mlp").is_dir()
    assert not list(run_dir.glob("trials/**/*.ckpt*"))


def test_a_checkpoint_that_does_not_load_means_starting_over(tmp_path):
    """A trial cut short (its process dead) whose checkpoint is not what its record says
    (cut short by a full disk, say): the repeat says why, starts at epoch 0 in a run of
    its own, and the files are gone."""
    run_dir = tmp_path / "runs"
    sweep("n_trials=1", run_dir=run_dir)
    orphan, _, orphan_run = orphan_trial(run_dir)
    client = client_for(run_dir)
    folder = run_dir / "trials" / "digits-mlp" / str(orphan.number)
    folder.mkdir(parents=True)
    checkpoint = folder / "resume-2.ckpt"
    checkpoint.write_bytes(b"half a checkpoint")
    (folder / RECORD_FILE).write_text(json.dumps(
        {"file": checkpoint.name, "epochs": 2, "bytes": 4096, "sha256": "0" * 64}))

    outcome = sweep("n_trials=2", run_dir=run_dir)
    [repeat] = [t for t in outcome.study.trials
                if t.user_attrs.get(attrs.RETRY_OF_ATTR) == orphan.number]
    assert repeat.state == TrialState.COMPLETE
    assert attrs.RESUMED_FROM_EPOCH_ATTR not in repeat.user_attrs
    assert "resume-2.ckpt has 17 bytes, not the 4096 saved" in \
        repeat.user_attrs[attrs.RESUME_ERROR_ATTR]
    assert repeat.user_attrs[attrs.RUN_ID_ATTR] != orphan_run
    assert client.get_run(orphan_run).info.status == "KILLED"
    assert not list(folder.glob("resume*"))


def test_a_run_the_tracking_server_has_not_caught_up_with_is_not_taken_over(tmp_path):
    """With a tracking server, a killed trial's MLflow writes may still wait in the
    outbox (tuner.tracking.resilient); a repeat that took the run over would have them
    land after its own (the killed trial's end after the repeat's start), so it starts
    over instead."""
    tracker = Tracker(plan(run_dir=tmp_path / "runs").cfg.tracking, "s")
    tracker.client.outbox = Outbox(tmp_path / "outbox", "s")
    tracker.client.breaker = Breaker(f"http://127.0.0.1:{free_port()}")
    client = tracker.client.raw
    run_id = client.create_run(client.create_experiment("s")).info.run_id
    assert tracker.why_not_resume(run_id, (3,)) is None
    assert "never created" in tracker.why_not_resume("pending:3", (3,))
    tracker.client.outbox.append("3", {"op": "log_batch", "run": run_id})
    assert "still wait in the outbox" in tracker.why_not_resume(run_id, (0, 3))
    assert tracker.why_not_resume(run_id, (0,)) is None
    tracker.client.breaker.trip(ConnectionError("refused"))
    assert "does not answer" in tracker.why_not_resume(run_id, (0,))
    client.delete_run(run_id)
    tracker.client.breaker = Breaker(f"http://127.0.0.1:{free_port()}")
    assert "no longer exists" in tracker.why_not_resume(run_id, (0,))

"""A trial across several processes with Lightning's DDP, launched from a slot.

The slot hands the order to :func:`fit_in_ranks` (tuner.trial.train.RankFitter). That
starts rank 0 as ``python -m tuner.launch.rank`` with the trial in the environment
(its config, seed, storage and trial id; see :mod:`tuner.launch.rank`). Rank 0 builds a
Trainer with ``strategy="ddp"``, and Lightning's default launcher starts ranks 1..k-1 by
running that same command again: each rank re-enters :mod:`tuner.launch.rank`, never the
sweep, so no rank claims a trial and every rank trains the same one.

Only rank 0 reports epochs to Optuna; it broadcasts each pruning decision so that all
ranks stop after the same epoch. Its metric rows come back to the slot through a pipe
(the slot forwards them to its driver, which writes the run), so no rank imports
MLflow. When rank 0 exits, the slot reads the result rank 0 wrote and returns it, with
each rank's report (``ranks.json``) and, if they failed, their output (``ranks.log``)
for the run. Ranks run in their own process group: if the trial is interrupted the slot
stops the whole group, and if the slot itself dies, rank 0 does (it watches its parent).
Under torchrun the ranks already run, on this machine and others
(:mod:`tuner.launch.torchrun`), and rank 0 is this very process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from optuna.trial import TrialState

from tuner.config.machine import launched_by_torchrun
from tuner.config.plan import SweepPlan
from tuner.core import attrs
from tuner.core.exits import STOP_GRACE, exit_reason
from tuner.core.results import MetricRow, TrialResult
from tuner.launch import torchrun
from tuner.launch.rank import RANKS_LOG, RESULT_FILE, SPEC_ENV
from tuner.tracking import tags
from tuner.trial.order import Order

RowsSink = Callable[[list[MetricRow]], None]


def fit_in_ranks(plan: SweepPlan, order: Order,
                 send_metrics: Callable[[int, list[MetricRow]], None]) -> TrialResult:
    """Train ``order`` on ``plan.ranks_per_trial`` processes. A trial whose rank 0 left
    no result, or a failed one, comes back FAIL with the ranks' output attached."""
    root = order.trial_dir
    root.mkdir(parents=True, exist_ok=True)
    for stale in (root / RESULT_FILE, *root.glob("rank-*.json")):
        stale.unlink(missing_ok=True)  # a retried trial number never reads an old result
    spec = rank_spec(plan, order)
    world = plan.ranks_per_trial

    def rows(batch: list[MetricRow]) -> None:
        send_metrics(order.number, batch)

    code = torchrun.lead(spec, rows) if launched_by_torchrun() else _run_ranks(root, spec, rows)
    result = TrialResult(order.number, TrialState.FAIL, run_id=order.run_id,
                         attrs={attrs.WORLD_SIZE_ATTR: world},
                         tags={tags.WORLD_SIZE: str(world)})
    reports = [json.loads(p.read_text()) for p in sorted(root.glob("rank-*.json"))]
    if reports:
        result.texts["ranks.json"] = json.dumps(reports, indent=2)
    outcome_file, log = root / RESULT_FILE, root / RANKS_LOG
    outcome = json.loads(outcome_file.read_text()) if outcome_file.is_file() else None
    if outcome is None or outcome["state"] == "FAIL":
        result.files = (str(log),) if log.is_file() else ()
        result.reason = (outcome["reason"] if outcome is not None else
                         f"rank 0 {exit_reason(code)} without a result; {_last_error(log)}")
        result.error_text = None if outcome is None else outcome.get("traceback")
        return result
    result.state = TrialState[outcome["state"]]
    result.values, result.pruned_at = outcome.get("values"), outcome.get("pruned_at")
    result.reason = outcome.get("reason")
    result.attrs.update(outcome.get("attrs", {}))
    result.params = outcome.get("params", {})
    if not plan.reports_epochs and outcome.get("epochs") is not None:
        result.attrs[attrs.EPOCHS_ATTR] = outcome["epochs"]
    result.error_text = outcome.get("model_error_text")
    return result


def rank_spec(plan: SweepPlan, order: Order) -> dict[str, Any]:
    """The trial as every rank reads it (JSON)."""
    cfg = plan.cfg
    return {
        "config": OmegaConf.to_container(order.cfg, resolve=True, enum_to_str=True),
        "seed": order.seed,
        "storage": OmegaConf.to_container(cfg.storage, resolve=True),
        "study_name": plan.study_name, "trial_id": order.trial_id,
        "pruner": OmegaConf.to_container(cfg.pruner, resolve=True),
        "metrics": list(plan.metrics), "reports_epochs": plan.reports_epochs,
        "measures": plan.compression is not None,
        "flush_interval": cfg.tracking.flush_interval,
        "run_id": order.run_id, "tracking_uri": cfg.tracking.tracking_uri,
        "root_dir": str(order.trial_dir),
        "threads": max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))),
        "best_value": order.best_value, "keeps_weights": order.keeps_weights,
        "direction": plan.directions[0],
        # Saving and resuming (tuner.trial.checkpoints); None where it is not supported.
        "checkpoint_dir": None if order.checkpoint_dir is None else str(order.checkpoint_dir),
        "checkpoint_every_s": cfg.resume_checkpoint_s,
        "resume": None if order.resume is None else {
            "checkpoint": str(order.resume.checkpoint),
            "logged_steps": order.resume.logged_steps},
        # A PBT segment (tuner.trial.segment): its epochs, where it starts and saves.
        "segment": None if order.segment is None else {
            "start_epoch": order.segment.start_epoch, "end_epoch": order.segment.end_epoch,
            "end_checkpoint": str(order.segment.end_checkpoint),
            "start_checkpoint": (None if order.segment.start_checkpoint is None
                                 else str(order.segment.start_checkpoint))},
    }


def _run_ranks(root: Path, spec: dict, rows: RowsSink) -> int:
    """Start rank 0 (which starts the others) and wait for it; its metric rows arrive,
    one JSON batch per line, on a pipe only rank 0 holds."""
    read_end, write_end = os.pipe()
    spec = {**spec, "metrics_fd": write_end}
    env = {**os.environ, SPEC_ENV: json.dumps(spec),
           # Ranks import the user's modules (_target_) from where this process does.
           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    reader = threading.Thread(target=_forward_rows, args=(read_end, rows),
                              name="tuner-rank0-metrics", daemon=True)
    with (root / RANKS_LOG).open("w") as log:
        try:
            rank0 = subprocess.Popen([sys.executable, "-m", "tuner.launch.rank"], env=env,
                                     stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True, pass_fds=(write_end,))
        finally:
            os.close(write_end)  # rank 0 holds it: EOF once rank 0 is gone
        reader.start()
        try:
            return rank0.wait()
        except BaseException:
            _stop_group(rank0)
            raise
        finally:
            # Ranks 1..k-1 are rank 0's children; none may outlive the trial.
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(rank0.pid, signal.SIGKILL)
            reader.join()  # every row rank 0 sent is forwarded before the result is read


def _forward_rows(read_end: int, rows: RowsSink) -> None:
    with os.fdopen(read_end, "r") as lines:
        for line in lines:
            with suppress(ValueError):  # a line cut short by a killed rank 0
                rows([tuple(row) for row in json.loads(line)])


def _stop_group(rank0: subprocess.Popen) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(rank0.pid, signal.SIGTERM)
    try:
        rank0.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(rank0.pid, signal.SIGKILL)
        rank0.wait()


def _last_error(log: Path) -> str:
    if not log.is_file():
        return "see the ranks' own output"
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "Exception" in line]
    return (errors or lines or ["the ranks wrote nothing"])[-1].strip()[:300]

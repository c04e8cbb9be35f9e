"""A trial across several processes with Lightning's DDP, launched from a slot.

The slot has claimed the trial and created its MLflow run; its lifecycle calls
:func:`fit_in_ranks` (the slot hands it over: tuner.trial.lifecycle.RankFitter). That
starts rank 0 as ``python -m tuner.launch.rank`` with the trial's address in the
environment (storage, study, trial id; see :mod:`tuner.launch.rank`). Rank 0 builds a
Trainer with ``strategy="ddp"``, and Lightning's default launcher starts ranks 1..k-1 by
running that same command again: each rank re-enters :mod:`tuner.launch.rank`, never the
sweep, so no rank asks for a trial and every rank rebuilds the same one (config and
seed) from the study by its id.

Only rank 0 reports epochs to Optuna and logs to MLflow; it broadcasts each pruning
decision so that all ranks stop after the same epoch. When rank 0 exits, the slot reads
the trial's result from the file rank 0 wrote, tells Optuna and ends the run as for any
trial. Ranks run in their own process group: if the trial is interrupted the slot
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
from contextlib import suppress
from pathlib import Path
from typing import Any

import optuna
from omegaconf import OmegaConf
from optuna.trial import TrialState

from tuner.config.machine import launched_by_torchrun
from tuner.config.plan import SweepPlan
from tuner.core import attrs
from tuner.core.exits import STOP_GRACE, exit_reason
from tuner.launch import torchrun
from tuner.launch.rank import RANKS_LOG, RESULT_FILE, SPEC_ENV
from tuner.study.trials import best_trial
from tuner.tracking import tags
from tuner.trial import resume
from tuner.trial.fit import FitOutcome
from tuner.trial.records import TrialRecords


class RanksFailed(RuntimeError):
    """The trial's ranks ended without a result (a crash, a kill, a hung collective)."""


def fit_in_ranks(plan: SweepPlan, trial: optuna.Trial, tracker: TrialRecords, run_id: str,
                 point: resume.ResumePoint | None = None) -> FitOutcome:
    """Train ``trial`` on ``plan.ranks_per_trial`` processes, logging into ``run_id``.
    ``point``: the checkpoint every rank resumes from (tuner.trial.resume). Raises
    :class:`RanksFailed` when rank 0 leaves no result or a failed one; the ranks'
    output is then attached to the run."""
    root = plan.trial_dir(trial.number)
    root.mkdir(parents=True, exist_ok=True)
    for stale in (root / RESULT_FILE, *root.glob("rank-*.json")):
        stale.unlink(missing_ok=True)  # a retried trial number never reads an old result
    spec = _rank_spec(plan, trial, tracker, run_id, point)
    world = plan.ranks_per_trial
    trial.set_user_attr(attrs.WORLD_SIZE_ATTR, world)
    tracker.set_tag(run_id, tags.WORLD_SIZE, str(world))
    code = torchrun.lead(spec) if launched_by_torchrun() else _run_ranks(root, spec)
    reports = [json.loads(p.read_text()) for p in sorted(root.glob("rank-*.json"))]
    if reports:
        tracker.log_text(run_id, json.dumps(reports, indent=2), "ranks.json")
    outcome_file, log = root / RESULT_FILE, root / RANKS_LOG
    outcome = json.loads(outcome_file.read_text()) if outcome_file.is_file() else None
    if outcome is None or outcome["state"] == "FAIL":
        if log.is_file():
            tracker.log_artifact(run_id, str(log))
        raise RanksFailed(outcome["reason"] if outcome is not None else
                          f"rank 0 {exit_reason(code)} without a result; {_last_error(log)}")
    return FitOutcome(TrialState[outcome["state"]], outcome.get("values"),
                      outcome.get("pruned_at"))


def _rank_spec(plan: SweepPlan, trial: optuna.Trial, tracker: TrialRecords, run_id: str,
               point: resume.ResumePoint | None) -> dict[str, Any]:
    """Where the trial is and how to report it, as every rank reads it (JSON)."""
    best = best_trial(trial.study)
    cfg = plan.cfg
    return {
        "storage": OmegaConf.to_container(cfg.storage, resolve=True),
        "study_name": plan.study_name, "trial_id": trial._trial_id,
        "pruner": OmegaConf.to_container(cfg.pruner, resolve=True),
        "metrics": list(plan.metrics), "reports_epochs": plan.reports_epochs,
        "tracking": OmegaConf.to_container(cfg.tracking, resolve=True),
        "experiment_id": tracker.experiment_id, "parent_run_id": tracker.parent_run_id,
        "run_id": run_id, "root_dir": str(plan.trial_dir(trial.number)),
        "threads": max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))),
        "best_value": None if best is None else best.values[0],
        "direction": plan.directions[0],
        # Saving and resuming (tuner.trial.checkpoints); None where it is not supported.
        "checkpoint": (str(resume.checkpoint_path(plan, trial)) if resume.supported(plan)
                       else None),
        "checkpoint_every_s": cfg.resume_checkpoint_s,
        "resume": None if point is None else {"checkpoint": str(point.checkpoint),
                                               "run_id": point.run_id},
    }


def _run_ranks(root: Path, spec: dict) -> int:
    env = {**os.environ, SPEC_ENV: json.dumps(spec),
           # Ranks import the user's modules (_target_) from where this process does.
           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    with (root / RANKS_LOG).open("w") as log:
        rank0 = subprocess.Popen([sys.executable, "-m", "tuner.launch.rank"], env=env,
                                 stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return rank0.wait()
        except BaseException:
            _stop_group(rank0)
            raise
        finally:
            # Ranks 1..k-1 are rank 0's children; none may outlive the trial.
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(rank0.pid, signal.SIGKILL)


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

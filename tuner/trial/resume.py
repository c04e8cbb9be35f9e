"""Where a trial cut short resumes: its chain's last checkpoint and MLflow run.

A trial that trains long saves its training state now and then
(:class:`tuner.trial.checkpoints.ResumeCheckpoint`). When it is cut short from outside
(:func:`tuner.study.retries.cut_short`: Ctrl-C, SIGTERM, its process found dead by its lease),
its repeat resumes from that checkpoint instead of epoch 0: it continues the same
MLflow run and inherits the per-epoch values reported up to the checkpoint, so the
pruner judges it on the whole curve.

A chain of repeats has one checkpoint file, in its first trial's folder
(``trials/<study>/<first number>/resume.ckpt``): a repeat finds it without searching,
and it always belongs to the run of the chain's latest attempt, because

- an attempt that ends on its own (COMPLETE, PRUNED, a failure of its own) deletes it;
  so does the driver when a slot dies on its own (a segfault, the OOM killer), which
  is a failure of the trial, not an interruption (:mod:`tuner.study.retries`);
- an attempt that does not resume (its predecessor failed on its own, or there is no
  checkpoint) deletes any left over before it creates its run;
- an attempt cut short keeps it, for the next one.

The run must be there to take over: a repeat starts over, in a run of its own, when
the run was never created (the tracking server was down) or records of it still wait in
the outbox (:mod:`tuner.tracking.resilient`), since those would land after the repeat's.
With ``resume_checkpoint_s: null`` nothing is saved and every repeat starts over.

The file must be visible where the repeat trains: a repeat on another machine
(``tuner worker``) without a shared ``run_dir`` starts over, with a run of its own.
Trials across several machines (torchrun with more than one node) neither save nor
resume: their other nodes could not read rank 0's file.

Kept free of torch and Lightning imports: the driver deletes checkpoints too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

from tuner.config.plan import SweepPlan
from tuner.core import attrs
from tuner.study.retries import attempt_of, cut_short, root_of
from tuner.tracking import tags
from tuner.tracking.links import run_id_of

CHECKPOINT_FILE = "resume.ckpt"


@dataclass(frozen=True)
class ResumePoint:
    checkpoint: Path
    run_id: str  # the MLflow run the chain's latest attempt trained in
    reports: dict[int, float]  # per-epoch values reported in that run (Optuna steps)
    attempts: tuple[int, ...] = ()  # the trial numbers that trained in that run
    epochs: int = 0  # epochs the checkpoint had trained, once it has been read


def supported(plan: SweepPlan) -> bool:
    return plan.cfg.resume_checkpoint_s is not None and plan.nodes == 1


def checkpoint_path(plan: SweepPlan, trial: optuna.Trial | optuna.trial.FrozenTrial) -> Path:
    """The one checkpoint file of ``trial``'s chain of repeats."""
    return plan.trial_dir(root_of(trial)) / CHECKPOINT_FILE


def partial_path(checkpoint: Path) -> Path:
    """Where a checkpoint is written before it replaces the last one in one rename."""
    return checkpoint.with_name(checkpoint.name + ".part")


def find(plan: SweepPlan, trial: optuna.Trial) -> ResumePoint | None:
    """Where ``trial`` resumes, or None when it starts at epoch 0: it is no repeat, the
    attempt before it was not cut short, or no checkpoint of its chain is here."""
    root = root_of(trial)
    if root == trial.number or not supported(plan):
        return None
    chain = sorted((t for t in trial.study.get_trials(deepcopy=False)
                    if root_of(t) == root and t.number != trial.number), key=attempt_of)
    if not chain or chain[-1].state != TrialState.FAIL or not cut_short(chain[-1]):
        return None
    path = checkpoint_path(plan, trial)
    study_attrs = trial.study.user_attrs
    run_ids = {t.number: run_id_of(t, study_attrs) for t in chain}
    run_id = next((run_ids[t.number] for t in reversed(chain) if run_ids[t.number]), None)
    if run_id is None or not path.is_file():
        return None
    sharing = [t for t in chain if run_ids[t.number] == run_id]
    reports: dict[int, float] = {}
    for attempt in sharing:  # later attempts' values win: they led to the checkpoint
        reports.update(attempt.intermediate_values)
    return ResumePoint(path, run_id, reports, tuple(t.number for t in sharing))


def discard(plan: SweepPlan, trial: optuna.Trial | optuna.trial.FrozenTrial) -> None:
    """Delete the checkpoint of ``trial``'s chain (and any half-written one)."""
    path = checkpoint_path(plan, trial)
    for stale in (path, partial_path(path)):
        stale.unlink(missing_ok=True)


def record_resume(trial: optuna.Trial, tracker, point: ResumePoint) -> None:
    """Before the repeat trains: say on the trial and the run that it resumed, and give
    it the values reported up to the checkpoint, so that the pruner judges it on the
    whole curve. The attribute comes first: any attempt that points at an earlier
    attempt's run carries it."""
    trial.set_user_attr(attrs.RESUMED_FROM_EPOCH_ATTR, point.epochs)
    trial.set_user_attr(attrs.RUN_ID_ATTR, point.run_id)
    tracker.set_tag(point.run_id, tags.RESUMED_FROM_EPOCH, str(point.epochs))
    for step, value in sorted(point.reports.items()):
        if step <= point.epochs:
            trial.report(value, step)

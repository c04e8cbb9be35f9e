"""Where a trial cut short resumes: its chain's last checkpoint and MLflow run.

A trial that trains long saves its training state now and then
(:class:`tuner.trial.checkpoints.ResumeCheckpoint`). When it is cut short from outside
(:func:`tuner.study.retries.cut_short`: Ctrl-C, SIGTERM, its process found dead by its lease),
its repeat resumes from that checkpoint instead of epoch 0: it continues the same
MLflow run and inherits the per-epoch values reported up to the checkpoint, so the
pruner judges it on the whole curve.

A chain of repeats keeps its checkpoints in its first trial's folder
(``trials/<study>/<first number>/``): a repeat finds them without searching. Each save
writes ``resume-<epochs>.ckpt`` in full and then, as the one step that commits it, the
record ``resume.json``: which file, after how many epochs, its size and SHA-256. So
the driver, which never imports torch, decides whether a repeat resumes: a checkpoint
is used only as its record describes it (a file cut short by a full disk or changed
since does not match, and the repeat starts over, saying why in its ``resume_error``
attribute). The record always belongs to the run of the chain's latest attempt,
because

- an attempt that ends on its own (COMPLETE, PRUNED, a failure of its own) deletes the
  chain's checkpoints; so does the driver when a slot dies on its own (a segfault, the
  OOM killer), which is a failure of the trial, not an interruption
  (:mod:`tuner.study.retries`);
- an attempt that does not resume (its predecessor failed on its own, or there is no
  checkpoint) deletes any left over before it trains;
- an attempt cut short keeps them, for the next one.

The run must be there to take over: a repeat starts over, in a run of its own, when
the run was never created (the tracking server was down) or records of it still wait in
the outbox (:mod:`tuner.tracking.resilient`), since those would land after the repeat's.
With ``resume_checkpoint_s: null`` nothing is saved and every repeat starts over.

The files must be visible where the repeat trains: a repeat on another machine
(``tuner worker``) without a shared ``run_dir`` starts over, with a run of its own.
Trials across several machines (torchrun with more than one node) neither save nor
resume: their other nodes could not read rank 0's file.

Kept free of torch and Lightning imports: the driver reads records and deletes
checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

from tuner.config.plan import SweepPlan
from tuner.core import attrs
from tuner.study.retries import attempt_of, cut_short, root_of
from tuner.tracking.links import run_id_of

RECORD_FILE = "resume.json"  # the last complete checkpoint of a chain: file, epochs, hash
CHECKPOINT_GLOB = "resume*"  # every file of a chain's checkpoints (records, parts included)


@dataclass(frozen=True)
class ResumePoint:
    checkpoint: Path
    run_id: str  # the MLflow run the chain's latest attempt trained in
    reports: dict[int, float]  # per-epoch values reported in that run (Optuna steps)
    attempts: tuple[int, ...] = ()  # the trial numbers that trained in that run
    epochs: int = 0  # epochs the checkpoint had trained
    problem: str | None = None  # why the checkpoint cannot be used, if it cannot


def supported(plan: SweepPlan) -> bool:
    return plan.cfg.resume_checkpoint_s is not None and plan.nodes == 1


def chain_dir(plan: SweepPlan, trial: optuna.Trial | optuna.trial.FrozenTrial) -> Path:
    """The folder holding the checkpoints of ``trial``'s chain of repeats."""
    return plan.trial_dir(root_of(trial))


def checkpoint_file(folder: Path, epochs: int) -> Path:
    return folder / f"resume-{epochs}.ckpt"


def partial_path(checkpoint: Path) -> Path:
    """Where a file is written before it takes its name in one rename."""
    return checkpoint.with_name(checkpoint.name + ".part")


def commit(checkpoint: Path, epochs: int) -> None:
    """Make ``checkpoint`` (whole, on disk) the chain's resume point: write its record,
    then delete the checkpoints it replaces."""
    record = {"file": checkpoint.name, "epochs": epochs, "bytes": checkpoint.stat().st_size,
              "sha256": sha256_of(checkpoint)}
    folder = checkpoint.parent
    written = partial_path(folder / RECORD_FILE)
    with written.open("w") as out:
        json.dump(record, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(written, folder / RECORD_FILE)
    for old in folder.glob("resume-*.ckpt"):
        if old.name != checkpoint.name:
            old.unlink(missing_ok=True)


def sha256_of(path: Path) -> str:
    """A file's SHA-256, read in blocks (checkpoints are large)."""
    digest = hashlib.sha256()
    with path.open("rb") as data:
        while block := data.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def last_checkpoint(folder: Path) -> tuple[Path | None, int, str | None]:
    """The chain's checkpoint, the epochs it trained and why it cannot be used (None
    when it can); (None, 0, None) when the chain never saved one."""
    record_file = folder / RECORD_FILE
    if not record_file.is_file():
        stray = next((p for p in folder.glob(CHECKPOINT_GLOB)), None) if folder.is_dir() else None
        return None, 0, (None if stray is None else
                         f"{stray.name} has no record of a complete save ({RECORD_FILE})")
    try:
        record = json.loads(record_file.read_text())
        path, epochs = folder / str(record["file"]), int(record["epochs"])
        size, expected = int(record["bytes"]), str(record["sha256"])
    except (ValueError, KeyError, TypeError, OSError) as error:
        return None, 0, f"{RECORD_FILE} is unreadable ({error})"
    if not path.is_file():
        return path, epochs, f"{path.name} is missing"
    if path.stat().st_size != size:
        return path, epochs, f"{path.name} has {path.stat().st_size} bytes, not the {size} saved"
    if sha256_of(path) != expected:
        return path, epochs, f"{path.name} changed since it was saved (SHA-256 differs)"
    return path, epochs, None


def find(plan: SweepPlan, trial: optuna.Trial) -> ResumePoint | None:
    """Where ``trial`` resumes, or None when it starts at epoch 0: it is no repeat, the
    attempt before it was not cut short, or its chain saved nothing. A point whose
    ``problem`` is set was found but cannot be used."""
    root = root_of(trial)
    if root == trial.number or not supported(plan):
        return None
    chain = sorted((t for t in trial.study.get_trials(deepcopy=False)
                    if root_of(t) == root and t.number != trial.number), key=attempt_of)
    if not chain or chain[-1].state != TrialState.FAIL or not cut_short(chain[-1]):
        return None
    study_attrs = trial.study.user_attrs
    run_ids = {t.number: run_id_of(t, study_attrs) for t in chain}
    run_id = next((run_ids[t.number] for t in reversed(chain) if run_ids[t.number]), None)
    path, epochs, problem = last_checkpoint(chain_dir(plan, trial))
    if run_id is None or (path is None and problem is None):
        return None
    sharing = [t for t in chain if run_ids[t.number] == run_id]
    reports: dict[int, float] = {}
    for attempt in sharing:  # later attempts' values win: they led to the checkpoint
        reports.update(attempt.intermediate_values)
    return ResumePoint(path or chain_dir(plan, trial), run_id, reports,
                       tuple(t.number for t in sharing), epochs, problem)


def discard(plan: SweepPlan, trial: optuna.Trial | optuna.trial.FrozenTrial) -> None:
    """Delete the checkpoints of ``trial``'s chain (and any half-written one)."""
    folder = chain_dir(plan, trial)
    if folder.is_dir():
        for stale in folder.glob(CHECKPOINT_GLOB):
            stale.unlink(missing_ok=True)


def record_resume(trial: optuna.Trial, point: ResumePoint) -> None:
    """Before the repeat trains: say on the trial that it resumed, and give it the values
    reported up to the checkpoint, so that the pruner judges it on the whole curve. The
    attributes come first: any attempt that points at an earlier attempt's run carries
    them."""
    from tuner.study.trial_attrs import set_trial_attrs

    set_trial_attrs(trial, {attrs.RESUMED_FROM_EPOCH_ATTR: point.epochs,
                                 attrs.RUN_ID_ATTR: point.run_id})
    for step, value in sorted(point.reports.items()):
        if step <= point.epochs:
            trial.report(value, step)

"""One rank of a DDP trial: ``python -m tuner.launch.rank``, started by a slot (rank 0) or
by Lightning's launcher (ranks 1..k-1), with the trial in ``TUNER_TRIAL_SPEC``. Under
torchrun, every process runs :func:`run_rank` in-process (tuner.launch.torchrun).

Every rank reads the trial's config and seed from the spec, so all ranks train the same
trial. Rank 0 alone holds the Optuna trial (epoch reports, pruning, against the storage
by the trial's id) and the trial's logger, whose batches go back to the slot (a pipe
named in the spec, or a callable under torchrun); it keeps the model's weights when it
beats the study's best, and writes the result the slot reads. Each rank writes a small
report of how far it trained, which the slot attaches to the run (``ranks.json``).
Every rank takes part in saving the trial's checkpoint and, for a repeat of a trial
cut short, resumes from it (tuner.trial.resume); the driver has already recorded the
resume.

Kept light at import: the slot imports the file names below without torch.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

SPEC_ENV = "TUNER_TRIAL_SPEC"  # JSON: where the trial is and how to report it
RESULT_FILE = "result.json"  # written by rank 0
RANKS_LOG = "ranks.log"  # every rank's stdout and stderr


def rank_report_file(root: Path, rank: int) -> Path:
    return root / f"rank-{rank}.json"


def main() -> int:
    spec = json.loads(os.environ[SPEC_ENV])
    # Lightning's launcher sets LOCAL_RANK for the ranks it starts; rank 0 has none.
    rank = int(os.environ.get("LOCAL_RANK", "0"))
    if rank == 0:
        _die_with_parent()
    run_rank(spec, rank)
    return 0


def run_rank(spec: dict, rank: int, rows: Callable[[list], None] | None = None,
             **trainer_overrides: Any) -> None:
    """Train this rank's part of the trial; rank 0 also writes the result (FAIL with the
    reason when training raises, before re-raising). ``rows``: where rank 0's metric
    batches go when it runs in the slot's own process (torchrun)."""
    root = Path(spec["root_dir"])
    try:
        _train(spec, rank, root, rows, trainer_overrides)
    except Exception as error:
        if rank == 0:
            from tuner.core.results import reason_of

            _write(root / RESULT_FILE, {"state": "FAIL", "reason": reason_of(error),
                                        "traceback": traceback.format_exc()})
        raise


def _train(spec: dict, rank: int, root: Path, rows: Callable[[list], None] | None,
           trainer_overrides: dict[str, Any]) -> None:
    from omegaconf import OmegaConf

    from tuner.trial.build import prepare_process
    from tuner.trial.fit import FitInputs, fit
    from tuner.trial.metrics_logger import BatchLogger

    prepare_process(spec["threads"])
    from tuner.study.storage import open_storage

    storage = open_storage(spec["storage"])
    resume = spec.get("resume")
    trial = None
    # Every rank has a logger, as with Lightning's own: a module may read self.logger on
    # any rank. Rank 0's writes the metrics and reaches the run (run_id, experiment).
    logger = BatchLogger(lambda batch: None)
    if rank == 0:
        trial = _optuna_trial(spec, storage)
        logger = BatchLogger(rows or _pipe_writer(spec["metrics_fd"]), spec["flush_interval"],
                             None if resume is None else resume["logged_steps"],
                             run_id=spec["run_id"], tracking_uri=spec["tracking_uri"])
    checkpoint, resume_from, more = _state_inputs(spec)
    try:
        fitted = fit(FitInputs(
            OmegaConf.create(spec["config"]), spec["seed"], tuple(spec["metrics"]),
            spec["reports_epochs"], root, trial=trial, logger=logger, checkpoint=checkpoint,
            resume_from=resume_from, trainer_overrides=trainer_overrides, callbacks=more,
            measures=spec.get("measures", False)))
    finally:
        logger.flush()
    trainer, outcome = fitted.trainer, fitted.outcome
    _write(rank_report_file(root, trainer.global_rank),
           {"rank": trainer.global_rank, "world_size": trainer.world_size,
            "epochs": trainer.current_epoch, "global_step": trainer.global_step,
            "pruned_at": outcome.pruned_at})
    if not trainer.is_global_zero:
        return
    _wait_for_other_ranks(trainer)
    result = {"state": outcome.state.name, "values": outcome.values,
              "pruned_at": outcome.pruned_at, "reason": outcome.reason,
              "params": logger.hyperparams, "epochs": trainer.current_epoch}
    result["attrs"] = fitted.measured_attrs()
    if outcome.values is not None and _beats_best(spec, outcome.values[0]):
        from tuner.trial.model import keep_weights

        kept, result["model_error_text"] = keep_weights(fitted, root)
        result["attrs"].update(kept)
    if getattr(checkpoint, "sha256", None) is not None:  # a PBT segment's, for its children
        from tuner.core import attrs

        result["attrs"].update({attrs.PBT_END_SHA_ATTR: checkpoint.sha256,
                                attrs.PBT_THREADS_ATTR: spec["threads"]})
    _write(root / RESULT_FILE, result)


def _state_inputs(spec: dict) -> tuple[Any, Path | None, tuple]:
    """Where the ranks save their state and what they resume from (as a slot's
    tuner.trial.train does): a repeat's resume checkpoint, or a PBT segment's."""
    from tuner.trial.checkpoints import ResumeCheckpoint

    segment = spec.get("segment")
    if segment is not None:
        from tuner.trial.order import SegmentOrder
        from tuner.trial.segment import segment_inputs

        start = segment["start_checkpoint"]
        return segment_inputs(SegmentOrder(segment["start_epoch"], segment["end_epoch"],
                                           Path(segment["end_checkpoint"]),
                                           None if start is None else Path(start)))
    checkpoint = None
    if spec.get("checkpoint_dir") is not None:
        checkpoint = ResumeCheckpoint(Path(spec["checkpoint_dir"]), spec["checkpoint_every_s"])
    resume = spec.get("resume")
    return checkpoint, None if resume is None else Path(resume["checkpoint"]), ()


def _optuna_trial(spec: dict, storage):
    """Rank 0's Optuna trial: epoch reports and pruning decisions."""
    import optuna
    from hydra.utils import instantiate

    study = optuna.load_study(study_name=spec["study_name"], storage=storage,
                              sampler=optuna.samplers.RandomSampler(),
                              pruner=instantiate(spec["pruner"]))
    return optuna.trial.Trial(study, spec["trial_id"])


def _pipe_writer(fd: int) -> Callable[[list], None]:
    """Rank 0's metric batches to the slot that started it: one JSON line each."""
    pipe = os.fdopen(fd, "w", buffering=1)

    def write(batch: list) -> None:
        pipe.write(json.dumps(batch) + "\n")

    return write


def _beats_best(spec: dict, value: float) -> bool:
    from tuner.core.results import is_better

    best = spec["best_value"]
    return bool(spec["keeps_weights"]) and (
        best is None or is_better(value, best, spec["direction"]))


def _wait_for_other_ranks(trainer, timeout: float = 60.0) -> None:
    """Rank 0 returns only once its launched ranks have exited, so the slot's view of
    the trial (and of the machine's devices) is settled when rank 0 exits."""
    from tuner.core.upstream import launched_rank_processes

    deadline = time.monotonic() + timeout
    for process in launched_rank_processes(trainer):
        process.wait(max(0.1, deadline - time.monotonic()))


def _die_with_parent() -> None:
    """If the slot that started this trial dies, stop every rank of it."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.killpg(os.getpgrp(), signal.SIGKILL)

    threading.Thread(target=watch, name="tuner-parent-watch", daemon=True).start()


def _write(path: Path, data: dict) -> None:
    partial = path.with_suffix(".part")
    partial.write_text(json.dumps(data))
    partial.replace(path)  # the slot never reads half a file


if __name__ == "__main__":
    raise SystemExit(main())

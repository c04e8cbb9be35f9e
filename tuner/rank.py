"""One rank of a DDP trial: ``python -m tuner.rank``, started by a slot (rank 0) or by
Lightning's launcher (ranks 1..k-1), with the trial's address in ``TUNER_TRIAL_SPEC``.

Every rank reads the trial's config and seed from the study by trial id, so all ranks
train the same trial. Rank 0 alone holds the Optuna trial (epoch reports, pruning) and
the MLflow logger, logs the model when it beats the study's best, and writes the
result the slot reads. Each rank writes a small report of how far it trained, which
the slot attaches to the run (``ranks.json``). Every rank takes part in saving the
trial's checkpoint and, for a repeat of a trial cut short, resumes from it
(tuner.resume); the slot has already recorded the resume.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import traceback
from pathlib import Path

from tuner.ddp import RESULT_FILE, SPEC_ENV, rank_report_file


def main() -> int:
    spec = json.loads(os.environ[SPEC_ENV])
    # Lightning's launcher sets LOCAL_RANK for the ranks it starts; rank 0 has none.
    rank = int(os.environ.get("LOCAL_RANK", "0"))
    if rank == 0:
        _die_with_parent()
    run_rank(spec, rank)
    return 0


def run_rank(spec: dict, rank: int, **trainer_overrides) -> None:
    """Train this rank's part of the trial; rank 0 also writes the result (FAIL with the
    reason when training raises, before re-raising)."""
    root = Path(spec["root_dir"])
    try:
        _train(spec, rank, root, **trainer_overrides)
    except Exception as error:
        if rank == 0:
            from tuner.outcome import reason_of

            _write(root / RESULT_FILE, {"state": "FAIL", "reason": reason_of(error),
                                        "traceback": traceback.format_exc()})
        raise


def _train(spec: dict, rank: int, root: Path, **trainer_overrides) -> None:
    import optuna
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from tuner.checkpoints import ResumeCheckpoint
    from tuner.study import quiet_optuna
    from tuner.tracking import tags
    from tuner.tracking.registry import is_better
    from tuner.tracking.runs import Tracker
    from tuner.training import look_up_callback_plugins_once, quiet_lightning
    from tuner.trial import fit, log_model

    torch.set_num_threads(spec["threads"])
    quiet_lightning()
    look_up_callback_plugins_once()
    quiet_optuna()
    storage = instantiate(spec["storage"])
    stored = storage.get_trial(spec["trial_id"])
    cfg = OmegaConf.create(stored.user_attrs[tags.CONFIG_ATTR])
    trial, logger, tracker = None, False, None
    point = _resume_point(spec)
    if rank == 0:
        study = optuna.load_study(study_name=spec["study_name"], storage=storage,
                                  sampler=optuna.samplers.RandomSampler(),
                                  pruner=instantiate(spec["pruner"]))
        trial = optuna.trial.Trial(study, spec["trial_id"])
        tracker = Tracker(OmegaConf.create(spec["tracking"]), spec["study_name"])
        tracker.attach(spec["experiment_id"], spec["parent_run_id"])
        tracker.client.bind(spec["run_id"], stored.number)  # its records join the slot's
        logger = tracker.trial_logger(spec["run_id"], resumed=point is not None)
    checkpoint = None
    if spec.get("checkpoint") is not None:
        checkpoint = ResumeCheckpoint(Path(spec["checkpoint"]), spec["checkpoint_every_s"])
    fitted = fit(cfg, stored.user_attrs[tags.SEED_ATTR], trial=trial,
                 metrics=tuple(spec["metrics"]), reports_epochs=spec["reports_epochs"],
                 logger=logger, root_dir=root, checkpoint=checkpoint,
                 resume_from=None if point is None else point.checkpoint,
                 **trainer_overrides)
    trainer = fitted.trainer
    _write(rank_report_file(root, trainer.global_rank),
           {"rank": trainer.global_rank, "world_size": trainer.world_size,
            "epochs": trainer.current_epoch, "global_step": trainer.global_step,
            "pruned_at": fitted.pruned_at})
    if not trainer.is_global_zero:
        return
    _wait_for_other_ranks(trainer)
    outcome = {"state": fitted.state.name, "values": fitted.values,
               "pruned_at": fitted.pruned_at}
    best = spec["best_value"]
    if (fitted.values is not None and cfg_logs_models(spec)
            and (best is None or is_better(fitted.values[0], best, spec["direction"]))):
        log_model(fitted, spec["trial_id"], storage, spec["run_id"], tracker,
                  stored.user_attrs[tags.CONFIG_ATTR])
    _write(root / RESULT_FILE, outcome)


def _resume_point(spec: dict):
    """The checkpoint the slot chose to resume from (it has recorded the resume)."""
    from tuner.resume import ResumePoint

    given = spec.get("resume")
    if given is None:
        return None
    return ResumePoint(Path(given["checkpoint"]), given["run_id"], {})


def cfg_logs_models(spec: dict) -> bool:
    return bool(spec["tracking"].get("log_models"))


def _wait_for_other_ranks(trainer, timeout: float = 60.0) -> None:
    """Rank 0 returns only once its launched ranks have exited, so the slot's view of
    the trial (and of the machine's devices) is settled when rank 0 exits."""
    launcher = getattr(trainer.strategy, "launcher", None)
    deadline = time.monotonic() + timeout
    for process in getattr(launcher, "procs", []):
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

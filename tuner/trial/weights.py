"""Where a new best's trained weights wait for their one export, without torch.

A COMPLETE trial that beats the best keeps its weights in its trial folder and says so
in its ``model_weights`` attribute (tuner.trial.model, which writes and exports them).
What can be decided without loading them lives here, so that the driver and ``tuner
sync`` ask it without importing torch: whether the study's best still waits for its
export on this machine, and deleting weights that no export will need.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.core import attrs
from tuner.study.trial_attrs import trial_attr
from tuner.study.trials import best_trial
from tuner.tracking.links import model_error_of, model_uri_of

WEIGHTS_FILE = "model.pt"
CLAIMED = ".export-"  # model.pt.export-<pid>: the weights one process is exporting
OTHER_EXPORT_WAIT_S = 120.0  # how long a command waits for another one's export here


def waiting_weights(study: optuna.Study) -> FrozenTrial | None:
    """The study's best trial, when its model is still to be exported from weights that
    this machine keeps; None when there is nothing to export here."""
    best = best_trial(study)
    if best is None:
        return None
    study_attrs = study.user_attrs
    if model_uri_of(best, study_attrs) is not None or model_error_of(best, study_attrs):
        return None
    return best if kept_file(best) is not None else None


def kept_file(trial: FrozenTrial) -> Path | None:
    """The trial's kept weights on this machine: the file itself, or the file that an
    export cut short (its process is gone) had claimed; None when this machine has none."""
    kept = trial_attr(trial, attrs.MODEL_WEIGHTS_ATTR)
    if kept is None:
        return None
    path = Path(kept)
    if path.is_file():
        return path
    for claimed in path.parent.glob(f"{path.name}{CLAIMED}*"):
        pid = claimed.name.rpartition("-")[2]
        if pid.isdigit() and not _alive(int(pid)):
            return claimed
    return None


def wait_for_other_export(trial: FrozenTrial | None,
                          timeout: float = OTHER_EXPORT_WAIT_S) -> None:
    """Wait while another live process on this machine exports ``trial``'s weights (a
    sweep and a worker ending together: one claimed them), at most ``timeout`` seconds,
    so that the caller's champion and report see the model it logs."""
    kept = None if trial is None else trial_attr(trial, attrs.MODEL_WEIGHTS_ATTR)
    if kept is None:
        return
    path = Path(kept)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(
            _alive(int(pid)) for claimed in path.parent.glob(f"{path.name}{CLAIMED}*")
            if (pid := claimed.name.rpartition("-")[2]).isdigit()
            and int(pid) != os.getpid()):
        time.sleep(0.2)


def claim(path: Path) -> Path | None:
    """Take ``path`` to export it: renamed, atomically, to a name with this process's id,
    so that of two commands on one machine ending together only one exports it (the
    other gets None)."""
    claimed = path.with_name(f"{path.name.split(CLAIMED)[0]}{CLAIMED}{os.getpid()}")
    try:
        path.rename(claimed)
    except FileNotFoundError:
        return None
    return claimed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def drop_weights(trial: FrozenTrial) -> None:
    """Delete ``trial``'s kept weights, if this machine has them."""
    kept = trial_attr(trial, attrs.MODEL_WEIGHTS_ATTR)
    if kept is not None:
        Path(kept).unlink(missing_ok=True)


def drop_beaten(study: optuna.Study) -> None:
    """Delete the kept weights of trials strictly worse than the best: only the best's
    model is ever exported. (A slot deletes the weights of the best its trial beat; a
    DDP trial's rank 0 does not know that trial, and two slots can beat the same best.)"""
    trials = study.get_trials(deepcopy=False)  # one read: a trial that ends later may be better
    best = best_trial(study, trials)
    if best is None:
        return
    sign = 1 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else -1
    for trial in trials:
        if trial.state == TrialState.COMPLETE and sign * trial.values[0] < sign * best.values[0]:
            drop_weights(trial)

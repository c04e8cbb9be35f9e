"""A trial's MLflow run, as its driver gives it one: new, or the run a repeat takes over.

A new trial's run is created in the run writer's thread (while the trial samples) and
recorded on the trial the moment it exists (:func:`new_run_of`), so that whoever ends
the trial (its driver, an interruption, a reaper) finds the run to end. A repeat of a
trial cut short may instead continue the run of the attempt it resumes
(:func:`take_over_run`: tuner.trial.resume says where, tuner.tracking.runs whether the
run can be taken over).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from tuner.config.plan import SweepPlan
from tuner.core import attrs
from tuner.core.upstream import storage_of, trial_id_of
from tuner.launch.run_writer import RunWriter
from tuner.study.retries import root_of
from tuner.tracking import tags
from tuner.trial import resume
from tuner.trial.order import ResumeFrom

if TYPE_CHECKING:
    from tuner.tracking.runs import Tracker

ENDED_BEFORE_ITS_RUN = "interrupted before its MLflow run was created"


def new_run_of(study: optuna.Study, tracker: Tracker, trial: optuna.Trial,
               retry_of: int | None) -> str:
    """Create a trial's run and record it on the trial at once (in the run writer's
    thread); a trial that ended meanwhile ends its run, and so does one whose trial
    cannot be told about it (the storage away): no run is left RUNNING unnamed."""
    run_id = tracker.create_trial_run(trial.number, retry_of)
    try:
        storage_of(study).set_trial_user_attr(trial_id_of(trial), attrs.RUN_ID_ATTR, run_id)
    except UpdateFinishedTrialError:
        tracker.end_trial(run_id, TrialState.FAIL, reason=ENDED_BEFORE_ITS_RUN,
                          interrupted=True, only_if_running=True)
    except Exception as error:
        tracker.end_trial(run_id, TrialState.FAIL, interrupted=True, only_if_running=True,
                          reason=f"interrupted (its trial could not be told of it: {error})")
        raise
    return run_id


def take_over_run(plan: SweepPlan, trial: optuna.Trial, writer: RunWriter, runs: list[str]
                  ) -> ResumeFrom | None:
    """Where a repeat of a trial cut short resumes, with its run taken over (``runs``
    gets its id); None to start at epoch 0, with the reason on the trial when a
    checkpoint was there but cannot be used."""
    point = resume.find(plan, trial)
    if point is None:
        return None
    tracker = writer.tracker
    why = point.problem or writer.ask(tracker.why_not_resume, point.run_id,
                                      list(point.attempts)).result()
    if why is not None:
        trial.set_user_attr(attrs.RESUME_ERROR_ATTR, why)
        return None
    # The trial points at the run before the run is RUNNING again: a kill in between
    # leaves a run that whoever reaps this trial finds and ends.
    resume.record_resume(trial, point)
    runs.append(point.run_id)
    writer.later(tracker.resume_trial, point.run_id, trial.number, root_of(trial),
                 trial=trial.number)
    writer.later(tracker.set_tag, point.run_id, tags.RESUMED_FROM_EPOCH, str(point.epochs),
                 trial=trial.number)
    logged = writer.ask(tracker.logged_steps, point.run_id).result()
    return ResumeFrom(point.checkpoint, point.epochs, logged)

"""How a trial's end is recorded: Optuna told first, then its MLflow run ended to match.

Used by the slot that trained the trial (tuner.trial.lifecycle) and by the driver for a
slot that died mid-trial (tuner.launch.pool), so it stays free of torch and Lightning,
which the driver never imports, and of MLflow, which the slot never imports (the run's
end goes through the trial's records, tuner.trial.records).
"""

from __future__ import annotations

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from tuner.core import attrs
from tuner.core.results import TrialResult
from tuner.study.trials import tell
from tuner.trial.records import TrialRecords


def record(study: optuna.Study, trial: optuna.Trial, tracker: TrialRecords,
           result: TrialResult) -> None:
    """Tell Optuna how the trial ended, then end its MLflow run to match."""
    if result.state == TrialState.COMPLETE:
        tell(study, trial, values=result.values)
    else:
        if result.reason:
            trial.set_user_attr(attrs.FAIL_REASON_ATTR, result.reason)
        tell(study, trial, state=result.state)
    if result.run_id is not None:
        tracker.end_trial(result.run_id, result.state, reason=result.reason,
                          pruned_at=result.pruned_at)


def record_interruption(study: optuna.Study, trial: optuna.Trial | int, tracker: TrialRecords,
                        reason: str, killed: bool = True) -> None:
    """Leave nothing RUNNING, wherever in the trial the interruption landed.

    The run ends KILLED when the trial was stopped from outside (a signal), FAILED when
    its process crashed (``killed=False``). A trial that someone else ended meanwhile (a
    reaper) keeps the state they gave it."""
    number = trial if isinstance(trial, int) else trial.number
    stored = study.get_trials(deepcopy=False)[number]
    state = stored.state
    if state == TrialState.RUNNING:
        try:
            study._storage.set_trial_user_attr(stored._trial_id, attrs.FAIL_REASON_ATTR,
                                               reason)
            tell(study, number, state=TrialState.FAIL)
            state = TrialState.FAIL
        except UpdateFinishedTrialError:  # someone else ended it meanwhile (a reaper)
            state = study.get_trials(deepcopy=False)[number].state
    # Read again now that the trial has ended: the driver may have recorded its run on
    # it meanwhile (a slot interrupted while it waited for its run's id,
    # tuner.launch.recorder); from now on nobody can.
    run_id = study.get_trials(deepcopy=False)[number].user_attrs.get(attrs.RUN_ID_ATTR)
    if run_id is not None:
        tracker.bind(run_id, number)
        failed = state == TrialState.FAIL
        tracker.end_trial(run_id, state, reason=reason if failed else None,
                          interrupted=failed and killed, only_if_running=True)

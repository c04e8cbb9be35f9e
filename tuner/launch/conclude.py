"""The end of a trial on the driver's side: Optuna told first, then the run ended to match.

:func:`conclude` records a trial that ended on its own (COMPLETE, PRUNED, a failure of
its own, its slot's death): the attributes its slot reported (kept weights, a model
error, its world size), Optuna's verdict, the beaten best's weights deleted, its
checkpoints deleted (only once Optuna knows: a kill just before still leaves them for
the repeat), and its run's last records and end, through the run writer.
:func:`conclude_interrupted` records a trial cut short (Ctrl-C, SIGTERM): FAIL
("interrupted"), its run KILLED, its checkpoints kept for the repeat.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from tuner.config.plan import SweepPlan
from tuner.core import attrs
from tuner.core.errors import StorageUnavailable
from tuner.core.results import TrialResult
from tuner.core.upstream import storage_of, trial_id_of
from tuner.launch.run_writer import RunWriter
from tuner.study.leases import supervisor_died
from tuner.study.retries import cut_short
from tuner.study.trial_attrs import set_attrs
from tuner.study.trials import fail_running, tell
from tuner.tracking.links import run_id_of
from tuner.tracking.orphans import running_trial_runs
from tuner.tracking.tags import SEED_PARAM
from tuner.trial import resume
from tuner.trial.weights import drop_beaten

if TYPE_CHECKING:
    from tuner.tracking.runs import Tracker

REASON_ATTR = {TrialState.FAIL: attrs.FAIL_REASON_ATTR, TrialState.PRUNED: attrs.PRUNED_REASON_ATTR}


def conclude(plan: SweepPlan, study: optuna.Study, trial: optuna.Trial, result: TrialResult,
             writer: RunWriter) -> None:
    own = dict(result.attrs)
    if result.reason and result.state in REASON_ATTR:
        own[REASON_ATTR[result.state]] = result.reason
    if own:
        set_attrs(storage_of(study), trial_id_of(trial), own)
    if result.state == TrialState.COMPLETE:
        tell(study, trial, values=result.values)
    else:
        tell(study, trial, state=result.state)
    if attrs.MODEL_WEIGHTS_ATTR in result.attrs:
        drop_beaten(study)  # the best it beat, or its own if another beat it meanwhile
    resume.discard(plan, trial)
    if result.run_id is not None:
        _end_run(trial.number, result, writer, own={*trial.params, SEED_PARAM})
    writer.catch_up()


def _end_run(number: int, result: TrialResult, writer: RunWriter, own: set[str]) -> None:
    """``own``: the run's params tuner logged (MLflow refuses to change one, so a module's
    param of the same name is left out)."""
    later, tracker, run_id = writer.later, writer.tracker, result.run_id
    module_params = {k: v for k, v in result.params.items() if k not in own}
    if module_params:
        later(tracker.log_params, run_id, module_params, trial=number)
    for key, value in result.tags.items():
        later(tracker.set_tag, run_id, key, value, trial=number)
    for name, text in result.texts.items():
        later(tracker.log_text, run_id, text, name, trial=number)
    for path in result.files:
        later(tracker.log_artifact, run_id, path, trial=number)
    if result.error_text:
        later(tracker.log_error, run_id, result.error_text, trial=number)
    later(tracker.end_trial, run_id, result.state, reason=result.reason,
          pruned_at=result.pruned_at, interrupted=result.killed, number=number, trial=number)


def conclude_interrupted(study: optuna.Study, number: int, writer: RunWriter, reason: str,
                         run_id: str | None = None) -> None:
    """Leave nothing RUNNING that can be ended: the trial FAIL with ``reason`` (unless
    someone ended it meanwhile, a reaper), its run (``run_id``, if the trial does not
    say) KILLED; its checkpoints stay. With the storage away, the trial stays RUNNING
    for the next command to reap and repeat, and its run is ended all the same."""
    state = TrialState.FAIL
    try:
        stored = fail_running(study, number, reason)
        state, run_id = stored.state, stored.user_attrs.get(attrs.RUN_ID_ATTR, run_id)
    except StorageUnavailable:
        pass
    if run_id is not None:
        failed = state == TrialState.FAIL
        writer.later(writer.tracker.end_trial, run_id, state,
                     reason=reason if failed else None, interrupted=failed,
                     only_if_running=True, trial=number)


ORPHANED = "abandoned: its trial ended without it (a crash between the two)"
STALE_AFTER_S = 300.0  # a finished trial's run still RUNNING this long after: its end was lost


def end_orphaned_runs(study: optuna.Study, writer: RunWriter) -> None:
    """End the study's trial runs that a crash left RUNNING (tuner.tracking.orphans): a
    run its trial does not name (made just before its process died), and the run of a
    finished trial whose recorder died before it ended the run (its driver or its
    reaper: a process of this host that is gone; elsewhere, a trial that ended minutes
    ago). A RUNNING trial's run is left to the trial's own end, or to whoever reaps it.
    The runs are read before the trials: a run exists only once its trial is RUNNING."""
    tracker = writer.tracker
    runs = running_trial_runs(tracker.client, tracker.experiment_id, tracker.study_name)
    if not runs:
        return
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    now = time.time()
    for number, run_ids in runs.items():
        trial = trials.get(number)
        if trial is None or trial.state == TrialState.RUNNING:
            continue
        linked = run_id_of(trial, study.user_attrs)
        unrecorded = supervisor_died(trial) or (
            trial.datetime_complete is not None
            and now - trial.datetime_complete.timestamp() > STALE_AFTER_S)
        for run_id in run_ids:
            tracker.client.bind(run_id, number)
            if run_id != linked:
                tracker.end_trial(run_id, TrialState.FAIL, reason=ORPHANED, interrupted=True,
                                  only_if_running=True)
            elif unrecorded:
                _end_as_told(tracker, run_id, trial)


def _end_as_told(tracker: Tracker, run_id: str, trial: optuna.trial.FrozenTrial) -> None:
    """End a finished trial's run as its trial ended (a FAIL with its reason, KILLED
    when it was cut short)."""
    failed = trial.state == TrialState.FAIL
    reason = trial.user_attrs.get(attrs.FAIL_REASON_ATTR) if failed else None
    tracker.end_trial(run_id, trial.state, reason=reason, only_if_running=True,
                      interrupted=failed and cut_short(trial), number=trial.number)

"""Reading a study's trials: what counts toward the budget, the best trial, telling.
"""

from __future__ import annotations

from collections.abc import Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.core import attrs
from tuner.core.upstream import storage_of, trial_id_of
from tuner.study.trial_attrs import trial_attr

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)  # what n_trials counts


def metric_names(study: optuna.Study) -> tuple[str, ...]:
    """The study's metric names (tuner's sweeps set them), else Optuna's value_0, ..."""
    return tuple(study.metric_names or [f"value_{i}" for i in range(len(study.directions))])


def best_trial(study: optuna.Study, trials: Sequence[FrozenTrial] | None = None
               ) -> FrozenTrial | None:
    """The COMPLETE trial with the best value of the study's first metric.

    For one metric this is Optuna's best trial; for several it is the point of the
    Pareto front that is best on the first metric (the one the champion is chosen by).
    Pass ``trials`` when they were just read, to save reading them again.

    Ties (common for accuracy on a small validation set) go to a trial that kept its
    weights (or, before tuner exported once at the end, logged its model), then to the
    lowest number: the champion's model is exported from this trial, and a trial that
    tied with the best when it ended did not keep its weights.
    """
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        return None
    sign = 1 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else -1
    return max(complete, key=lambda t: (sign * t.values[0], _has_model(t), -t.number))


def _has_model(trial: FrozenTrial) -> bool:
    return (trial_attr(trial, attrs.MODEL_WEIGHTS_ATTR) is not None
            or attrs.MODEL_URI_ATTR in trial.user_attrs)


def tell(study: optuna.Study, trial: optuna.Trial, **outcome) -> None:
    """``study.tell``, tolerating GridSampler's way of ending a study.

    GridSampler calls ``study.stop()`` after the trial that uses its last point, and
    ``stop()`` raises outside ``study.optimize()``. The trial's state is stored before
    that (Optuna stores it in a ``finally``), and the sweep loop checks
    :func:`grid_exhausted` before asking again, so that one error is safe to drop.
    """
    try:
        study.tell(trial, **outcome)
    except RuntimeError as error:
        if not (isinstance(study.sampler, optuna.samplers.GridSampler)
                and "Study.stop" in str(error)):
            raise


def grid_exhausted(study: optuna.Study) -> bool:
    sampler = study.sampler
    return isinstance(sampler, optuna.samplers.GridSampler) and sampler.is_exhausted(study)


def grid_all_started(trials: Sequence[FrozenTrial], grid_points: int | None) -> bool:
    """Whether every one of a grid study's ``grid_points`` is finished or being trained
    (None: not a grid study). GridSampler would then hand the next ``ask`` a point
    another slot is training (it re-evaluates rather than stop early); tuner's claimant
    waits instead, since a finished grid ends the sweep and a failed point is not tried
    again by the grid either."""
    if grid_points is None:
        return False
    started = {t.system_attrs["grid_id"] for t in trials
               if "grid_id" in t.system_attrs and t.state != TrialState.WAITING}
    return len(started) >= grid_points


def fail_running(study: optuna.Study, number: int, reason: str) -> FrozenTrial:
    """Mark trial ``number`` FAIL with ``reason`` if it is still RUNNING (an
    interruption, a dead slot); a trial someone else ended meanwhile (a reaper) keeps
    the state they gave it. Returns the trial as it stands afterwards."""
    from optuna.exceptions import UpdateFinishedTrialError

    stored = study.get_trials(deepcopy=False)[number]
    if stored.state == TrialState.RUNNING:
        try:
            storage_of(study).set_trial_user_attr(trial_id_of(stored), attrs.FAIL_REASON_ATTR,
                                                   reason)
            tell(study, number, state=TrialState.FAIL)
        except UpdateFinishedTrialError:
            pass
        except ValueError:
            # Optuna's tell says "Cannot tell a FAIL trial." when it finds the trial
            # ended between the read above and the tell (another process's end, or a
            # cached RUNNING): seen under SLURM, where SIGTERM reaches every process at
            # once. Only an error if the trial is still RUNNING.
            if study.get_trials(deepcopy=False)[number].state == TrialState.RUNNING:
                raise
        stored = study.get_trials(deepcopy=False)[number]
    return stored

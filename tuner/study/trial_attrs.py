"""tuner's attributes of a trial: several in one write, and tuner's own kept out of sight.

A trial carries two kinds of attribute (names in :mod:`tuner.core.attrs`). What a person
reading the study needs (its MLflow run, its seed, why it failed or was pruned, its
attempt) is a *user* attribute, which optuna-dashboard shows as a column of the trials
table. What only tuner reads (the lease's owner, supervisor and expiry, the composed
config, the path of kept weights) is a *system* attribute, which the dashboard does not
show: the config alone, one YAML line, made the trials page 19,000 px wide. Studies
written before this split hold all of them as user attributes; :func:`trial_attr`
reads either.

Optuna's storages set one attribute per call. On the journal file (the default
storage) each call takes the file's lock, appends a line and fsyncs, and a trial sets
six attributes of its own (its lease's three, its seed, config and MLflow run id): on
this project's machines about half a millisecond each, a share of what a short trial
costs. Optuna has no call that sets several, but its journal backend appends a list of
log lines under one lock and one fsync, so :func:`set_attrs` writes the very lines that
``set_trial_user_attr`` and ``set_trial_system_attr`` would, in one append: every
reader (another worker, the dashboard, Optuna itself) replays them as before, and they
land together, so a reader never sees a lease's owner without its expiry. Other
storages get one call per attribute.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage
from optuna.trial import FrozenTrial

from tuner.core.attrs import SYSTEM_TRIAL_ATTRS
from tuner.core.upstream import journal_append_attrs, refresh_cached_attrs, trial_id_of


def trial_attr(trial: FrozenTrial, name: str, default: Any = None) -> Any:
    """The trial's attribute ``name``, wherever tuner wrote it (see above)."""
    if name in SYSTEM_TRIAL_ATTRS and name in trial.system_attrs:
        return trial.system_attrs[name]
    return trial.user_attrs.get(name, default)


def set_trial_attrs(trial: optuna.Trial, values: dict[str, Any]) -> None:
    """Set each of ``values`` on a live trial, in one write (see above)."""
    user, system = _split(values)
    _write(trial.storage, trial_id_of(trial), user, system)
    refresh_cached_attrs(trial, user, system)


def set_attrs(storage: BaseStorage, trial_id: int, values: dict[str, Any]) -> None:
    """Set each of ``values`` on the trial, as a user or a system attribute by its name;
    raises UpdateFinishedTrialError as Optuna does if the trial has finished."""
    _write(storage, trial_id, *_split(values))


def _split(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    user = {k: v for k, v in values.items() if k not in SYSTEM_TRIAL_ATTRS}
    system = {k: v for k, v in values.items() if k in SYSTEM_TRIAL_ATTRS}
    return user, system


def _write(storage: BaseStorage, trial_id: int, user: dict[str, Any],
           system: dict[str, Any]) -> None:
    if (isinstance(storage, JournalStorage) and len(user) + len(system) > 1
            and journal_append_attrs(storage, trial_id, user, system)):
        return
    for key, value in user.items():
        storage.set_trial_user_attr(trial_id, key, value)
    for key, value in system.items():
        storage.set_trial_system_attr(trial_id, key, value)

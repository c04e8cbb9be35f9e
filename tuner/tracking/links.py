"""A trial's MLflow run and model, also when they were written after the trial ended.

A trial normally holds its run id and model URI in its own user attributes. When the
tracking server was down, the run is created (and the model logged) on replay, after
the trial was told, and Optuna does not change a finished trial: those ids then live in
the study's user attributes ``mlflow_run_id.<number>`` and ``mlflow_model_uri.<number>``,
while the trial keeps ``mlflow_run_id: pending:<number>``. A model is exported once, at
the end of the sweep, after its trial ended (tuner.trial.model): its URI, or why it has
none (``model_error.<number>``), is always written late.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from optuna.trial import FrozenTrial

from tuner.core import attrs


def late_attr(name: str, number: int) -> str:
    """The study user attribute holding trial ``number``'s ``name`` written late."""
    return f"{name}.{number}"


def run_id_of(trial: FrozenTrial, study_attrs: Mapping[str, Any]) -> str | None:
    return study_attrs.get(late_attr(attrs.RUN_ID_ATTR, trial.number),
                           trial.user_attrs.get(attrs.RUN_ID_ATTR))


def model_uri_of(trial: FrozenTrial, study_attrs: Mapping[str, Any]) -> str | None:
    return study_attrs.get(late_attr(attrs.MODEL_URI_ATTR, trial.number),
                           trial.user_attrs.get(attrs.MODEL_URI_ATTR))


def model_error_of(trial: FrozenTrial, study_attrs: Mapping[str, Any]) -> str | None:
    """Why the trial has no model: its input could not be told, the export failed, or the
    model waits in the outbox; None once it has one (a model that waited was logged)."""
    if model_uri_of(trial, study_attrs) is not None:
        return None
    return study_attrs.get(late_attr(attrs.MODEL_ERROR_ATTR, trial.number),
                           trial.user_attrs.get(attrs.MODEL_ERROR_ATTR)) or None

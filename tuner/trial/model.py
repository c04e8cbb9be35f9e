"""Logging a trial's trained module to its MLflow run, when it beats the study's best.

A COMPLETE trial whose first value beats the best so far exports its module
(``torch.export``, MLflow's ``pt2`` format) to its run and records the model's URI on
the Optuna trial; the champion is later chosen among those (tuner.app.report).
"""

from __future__ import annotations

import traceback

from optuna.storages import BaseStorage

from tuner.core import attrs
from tuner.core.results import reason_of
from tuner.tracking.runs import Tracker
from tuner.trial.build import example_input
from tuner.trial.fit import Fitted

MODEL_WAITS = ("not logged yet: the MLflow tracking server did not answer; its weights wait "
               "in the outbox, and `tuner sync` (or the end of the sweep) logs it")


def log_model(fitted: Fitted, trial_id: int, storage: BaseStorage, run_id: str,
              tracker: Tracker, config_yaml: str) -> None:
    """Log the trained module to its run; record the URI (or why not) on the trial.
    ``config_yaml``: the trial's config, kept with the weights if they must wait.

    Never raises for the model's sake: a module that ``torch.export`` cannot trace keeps
    its trial COMPLETE, with the reason in the trial's ``model_error`` attribute and the
    traceback on its run."""
    try:
        uri = tracker.client.log_model(
            run_id, fitted.module, example_input(fitted.module, fitted.datamodule), config_yaml)
    except Exception as error:
        storage.set_trial_user_attr(trial_id, attrs.MODEL_ERROR_ATTR, reason_of(error))
        tracker.log_error(run_id, traceback.format_exc())
    else:
        if uri is None:  # the tracking server did not answer: the weights wait in the outbox
            storage.set_trial_user_attr(trial_id, attrs.MODEL_ERROR_ATTR, MODEL_WAITS)
        else:
            storage.set_trial_user_attr(trial_id, attrs.MODEL_URI_ATTR, uri)

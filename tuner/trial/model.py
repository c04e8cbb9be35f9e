"""A trial's trained model: weights kept while the sweep runs, exported once at its end.

Exporting a model (``torch.export`` into MLflow's ``pt2`` format) traces the module and
writes an MLflow model, and most of a sweep's early trials each beat the best so far. So
a COMPLETE trial that beats the best only keeps its weights (:func:`keep_weights`:
``model.pt`` in its trial folder, beside its checkpoint: the state dict and an example
input, tensors only, loaded back with ``weights_only``), and its driver records where on
the trial and deletes the weights of the best it beat (tuner.launch.driver). When the
sweep ends, :func:`export_best` rebuilds the study's best trial from its config and
those weights and exports it, once, to the trial's own MLflow run (a slot does it, asked
by the driver: tuner.launch.slot); the champion is then chosen among exported models
(tuner.app.report).

A sweep killed before its end leaves the best's weights: the next run of the study, or
``tuner sync``, exports them. Weights that another machine kept (a ``tuner worker``) are
exported by that machine's command at its end, or by ``tuner sync`` there.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import TYPE_CHECKING

import optuna

from tuner.core import attrs
from tuner.core.results import reason_of
from tuner.study.trial_attrs import trial_attr
from tuner.study.trials import best_trial
from tuner.tracking.links import late_attr, run_id_of
from tuner.tracking.weights_file import load_weights, save_weights
from tuner.trial.build import example_input, rebuild_module
from tuner.trial.divergence import finite_weights
from tuner.trial.fit import Fitted
from tuner.trial.served import for_serving
from tuner.trial.weights import (
    WEIGHTS_FILE,
    claim,
    drop_beaten,
    kept_file,
    wait_for_other_export,
    waiting_weights,
)

if TYPE_CHECKING:  # MLflow loads with it: only the export, at the sweep's end, needs it
    from tuner.tracking.runs import Tracker

NOT_FINITE = "its weights are NaN or infinite: the model is not kept"
MODEL_WAITS = ("not logged yet: the MLflow tracking server did not answer; its weights wait "
               "in the outbox, and `tuner sync` (or the end of the sweep) logs it")


def keep_weights(fitted: Fitted, folder: Path) -> tuple[dict[str, str], str | None]:
    """Save the trained module's weights and an example input in ``folder``. Returns the
    trial attributes that say so (``model_weights``, or ``model_error`` with the reason)
    and, on an error, its traceback for the run. Never raises for the model's sake: a
    module whose input cannot be told keeps its trial COMPLETE. Weights that are not
    finite are never kept (tuner.trial.divergence)."""
    if not finite_weights(fitted.module):
        return {attrs.MODEL_ERROR_ATTR: NOT_FINITE}, None
    try:
        inputs = example_input(fitted.module, fitted.datamodule)
        path = (folder / WEIGHTS_FILE).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        save_weights(path, fitted.module, inputs)
    except Exception as error:
        return {attrs.MODEL_ERROR_ATTR: reason_of(error)}, traceback.format_exc()
    return {attrs.MODEL_WEIGHTS_ATTR: str(path)}, None


def export_best(study: optuna.Study, tracker: Tracker) -> str | None:
    """Export the best trial's kept weights to its MLflow run, once; record the model's
    URI (or why there is none) on the study, since Optuna does not change a finished
    trial (tuner.tracking.links). Then delete the weights this machine keeps for trials
    worse than the best: only the best's model is ever exported.

    Returns what happened, in a line, or None when there was nothing to export here.
    Never raises for the model's sake (a module ``torch.export`` cannot trace)."""
    best = waiting_weights(study)
    found = None if best is None else kept_file(best)
    kept_at = None if found is None else claim(found)
    if kept_at is None:  # nothing to export here, or another command on this machine does
        wait_for_other_export(best_trial(study))  # its model then is in the study's records
        drop_beaten(study)
        return None
    config_yaml = trial_attr(best, attrs.CONFIG_ATTR)
    run_id = run_id_of(best, study.user_attrs)
    tracker.bind(run_id, best.number)  # a record that must wait joins its trial's
    try:
        state_dict, example_input = load_weights(kept_at)
        module = rebuild_module(config_yaml, state_dict)
        uri = tracker.log_model(run_id, module, example_input, config_yaml, for_serving)
    except Exception as error:
        why = reason_of(error)
        study.set_user_attr(late_attr(attrs.MODEL_ERROR_ATTR, best.number), why)
        tracker.log_error(run_id, traceback.format_exc())
        said = f"trial {best.number}'s model could not be exported: {why}"
    else:
        if uri is None:  # the tracking server did not answer: the outbox has the weights
            study.set_user_attr(late_attr(attrs.MODEL_ERROR_ATTR, best.number), MODEL_WAITS)
            said = f"trial {best.number}'s model {MODEL_WAITS}"
        else:
            study.set_user_attr(late_attr(attrs.MODEL_URI_ATTR, best.number), uri)
            said = f"exported trial {best.number}'s model: {uri}"
    kept_at.unlink(missing_ok=True)
    drop_beaten(study)
    return said

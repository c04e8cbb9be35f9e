"""Trial models in MLflow, and the study's champion in the model registry.

Models are saved in MLflow's ``pt2`` format (``torch.export``): a traced graph and its
weights, loadable with MLflow's pickle deserialisation switched off. Only the study's best
trial's model is logged, once, at the end of the sweep (tuner.trial.model), and is
registered under the study name with the alias ``champion``, which moves only when a
new best beats the current champion's value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tuner.core.results import is_better
from tuner.tracking import tags

if TYPE_CHECKING:
    import torch


def log_trial_model(module: torch.nn.Module, example_input: tuple[torch.Tensor, ...],
                    run_id: str) -> str:
    """Export ``module`` (on CPU, eval mode) into the trial's run; return the model URI.

    Raises whatever ``torch.export`` raises for a module it cannot trace (data-dependent
    control flow, non-tensor inputs); the caller records that and goes on.
    """
    import mlflow.pytorch  # imports torch: only slots log models, never the driver
    import torch

    was_training = module.training
    module.eval()
    try:
        arrays = [x.detach().cpu().numpy() for x in example_input]
        info = mlflow.pytorch.log_model(
            module.cpu(), name="model", input_example=arrays[0] if len(arrays) == 1 else arrays,
            serialization_format="pt2", run_id=run_id,
            # Stated, not inferred: inference starts a subprocess that imports the model's
            # dependencies, which takes seconds per logged model.
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
    finally:
        module.train(was_training)
    return info.model_uri


@dataclass(frozen=True)
class Champion:
    name: str  # registered model name (the study name)
    version: str
    value: float
    trial_number: int
    run_id: str  # the trial's MLflow run: identifies the trial across recreated studies
    promoted: bool  # True when this sweep moved the alias


def current_champion(client: MlflowClient, name: str) -> Champion | None:
    try:
        mv = client.get_model_version_by_alias(name, tags.CHAMPION_ALIAS)
    except MlflowException:
        return None
    return Champion(name, str(mv.version), float(mv.tags.get(tags.VERSION_VALUE, "nan")),
                    int(mv.tags.get(tags.TRIAL_NUMBER, "-1")), mv.run_id, promoted=False)


def promote(client: MlflowClient, name: str, model_uri: str, run_id: str, value: float,
            direction: str, trial_number: int) -> Champion:
    """Register ``model_uri`` as the new champion if it beats the current one.

    Two commands that end together on one study (a sweep and a worker: the one that
    exported the model, and the one that waited for it) may both promote it; if the
    registry refuses this one's write because the other's landed first, the champion
    that other command registered for the same run is returned, not promoted here."""
    current = current_champion(client, name)
    if current is not None and (current.run_id == run_id
                                or not is_better(value, current.value, direction)):
        return current
    try:
        return register_champion(client, name, model_uri, run_id, value, trial_number)
    except MlflowException:
        current = current_champion(client, name)
        if current is not None and current.run_id == run_id:
            return current
        raise


def register_champion(client: MlflowClient, name: str, model_uri: str, run_id: str,
                      value: float, trial_number: int) -> Champion:
    """Make ``model_uri`` a new version of the registered model ``name`` and move the
    ``champion`` alias to it. The version is created first and the alias moved in one
    call after it: a failure in between leaves the alias where it was."""
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, tags={tags.STUDY: name})
    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/") else None
    mv = client.create_model_version(
        name, source=model_uri, run_id=run_id, model_id=model_id,
        tags={tags.VERSION_VALUE: repr(value), tags.TRIAL_NUMBER: str(trial_number),
              tags.STUDY: name})
    client.set_registered_model_alias(name, tags.CHAMPION_ALIAS, mv.version)
    return Champion(name, str(mv.version), value, trial_number, run_id, promoted=True)

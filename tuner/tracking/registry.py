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

    from tuner.tracking.export_checks import answered_cheaply

    was_training = module.training
    module.eval()
    try:
        arrays = [x.detach().cpu().numpy() for x in example_input]
        with answered_cheaply():
            info = mlflow.pytorch.log_model(
                module.cpu(), name="model",
                input_example=arrays[0] if len(arrays) == 1 else arrays,
                serialization_format="pt2", run_id=run_id,
                # Stated, not inferred: inference starts a subprocess that imports the
                # model's dependencies, which takes seconds per logged model.
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
            direction: str, trial_number: int, metric: str | None = None) -> Champion:
    """Register ``model_uri`` as the new champion if it beats the current one.

    Two commands that end together on one study (a sweep and a worker: the one that
    exported the model, and the one that waited for it) may both promote the same run at
    once. Registration converges: both end with the alias on the run's first version."""
    current = current_champion(client, name)
    if current is not None and (current.run_id == run_id
                                or not is_better(value, current.value, direction)):
        return current
    return register_champion(client, name, model_uri, run_id, value, trial_number, metric)


def register_champion(client: MlflowClient, name: str, model_uri: str, run_id: str,
                      value: float, trial_number: int, metric: str | None = None) -> Champion:
    """Make ``model_uri`` a version of the registered model ``name`` and move the
    ``champion`` alias to it. The version is created first and the alias moved in one
    call after it: a failure in between leaves the alias where it was.

    Safe against another command registering the same run at the same moment (the
    registry has no lock to take): the model may already exist, and of the run's
    versions the lowest is the one aliased; a version this call made beyond it is
    deleted again, so the run is registered once. A version of the run registered before
    (a recreated study's best, beaten and back) is aliased again, not registered anew."""
    _ensure_registered_model(client, name)
    versions = _versions_of_run(client, name, run_id)
    made = None
    if not versions:
        model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/") \
            else None
        version_tags = {tags.VERSION_VALUE: repr(value), tags.TRIAL_NUMBER: str(trial_number),
                        tags.STUDY: name}
        if metric is not None:
            version_tags[tags.VERSION_METRIC] = metric
        made = str(client.create_model_version(
            name, source=model_uri, run_id=run_id, model_id=model_id,
            tags=version_tags).version)
        versions = _versions_of_run(client, name, run_id)
    first = versions[0]
    _move_alias(client, name, first)
    if made is not None and made != first:
        client.delete_model_version(name, made)  # the other command's version came first
    return Champion(name, first, value, trial_number, run_id, promoted=True)


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    try:
        client.get_registered_model(name)
        return
    except MlflowException:
        pass
    try:
        client.create_registered_model(name, tags={tags.STUDY: name})
    except MlflowException as e:
        # Already there: another command created it in between. Anything else is real.
        if e.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def _move_alias(client: MlflowClient, name: str, version: str) -> None:
    try:
        client.set_registered_model_alias(name, tags.CHAMPION_ALIAS, version)
    except MlflowException:
        # The store's alias write is a read then an insert: two at once, and the second
        # hits the unique key. Done if the other moved it here; otherwise, once more.
        current = current_champion(client, name)
        if current is not None and current.version == version:
            return
        client.set_registered_model_alias(name, tags.CHAMPION_ALIAS, version)


def _versions_of_run(client: MlflowClient, name: str, run_id: str) -> list[str]:
    """The versions of ``name`` registered from ``run_id``, lowest first."""
    # Filtered on the run only: a run id is hex, a study name may hold a quote.
    found = client.search_model_versions(f"run_id = '{run_id}'")
    return sorted((str(mv.version) for mv in found if mv.name == name), key=int)

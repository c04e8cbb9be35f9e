"""What a logged model takes as input, said where it is served (`tuner serve`).

MLflow keeps it beside the model: the signature inferred from the input example tuner
logs with every model (tuner.tracking.registry.log_trial_model), and that example as a
request body (``serving_input_example.json``) that the model server accepts as it is.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelInput:
    shape: str  # "rows of 64 float32 values", from the signature
    example: str | None  # a file holding a request body the server accepts, if logged


def model_input(model_uri: str) -> ModelInput | None:
    """The input of the model at ``model_uri``; None when MLflow keeps no signature."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        info = mlflow.models.get_model_info(model_uri)
    except (MlflowException, OSError):
        return None
    if info.signature is None or info.signature.inputs is None:
        return None
    shapes = [_describe(spec) for spec in info.signature.inputs.to_dict()]
    example = None
    serving = (info.saved_input_example_info or {}).get("serving_input_path")
    if serving:
        try:
            example = mlflow.artifacts.download_artifacts(f"{model_uri}/{serving}")
        except (MlflowException, OSError):
            example = None
    return ModelInput("; ".join(shapes), example)


def _describe(spec: dict) -> str:
    tensor = spec.get("tensor-spec")
    if tensor is None:  # a column of a table: its name and type
        return f"{spec.get('name', 'a column')} ({spec.get('type')})"
    shape = [n for n in tensor["shape"] if n != -1]
    if not shape:
        return f"{tensor['dtype']} scalars"
    if len(shape) == 1:
        return f"rows of {shape[0]} {tensor['dtype']} values"
    return f"arrays of shape {tuple(shape)}, {tensor['dtype']}"

"""One-time MLflow costs that a process can pay while it would otherwise wait.

The driver imports the store code while its slots import torch (slots never import
MLflow while they train: their driver writes their records). A slot that has stopped
saves a tiny model the way the best trial's is exported, while other slots still train
(tuner.launch.slot): the first ``torch.export`` in a process costs seconds of imports and
set-up, which the export at the end of the sweep would otherwise add to the sweep's wall
time. (MLflow's checks that import IPython and scan the installed packages are answered
without that cost: tuner.tracking.export_checks.)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tuner.tracking.server import is_server_uri


def import_store_code(tracking_uri: str) -> None:
    """Import the MLflow store modules that ``tracking_uri`` will use."""
    if is_server_uri(tracking_uri):
        import mlflow.store.tracking.rest_store
    else:
        import mlflow.store.model_registry.sqlalchemy_store
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401


def warm_model_export() -> None:
    """Save a tiny module as trials log theirs (pt2), to a temporary folder."""
    import mlflow.pytorch
    import torch

    from tuner.tracking.export_checks import answered_cheaply

    # Two rows, as trials export: one row makes torch.export warn about specialising it.
    module = torch.nn.Linear(2, 1).eval()
    with tempfile.TemporaryDirectory(prefix="tuner-warmup-") as folder, answered_cheaply():
        mlflow.pytorch.save_model(module, Path(folder) / "model", serialization_format="pt2",
                                  input_example=torch.zeros(2, 2).numpy(),
                                  pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])

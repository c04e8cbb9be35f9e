"""One-time costs paid while a process would otherwise wait.

A sweep's start is a relay: the slot imports torch and Lightning and trains the
preflight batch while the driver waits; then the driver creates the MLflow store while
the slot waits. Each side can use the other's turn:

- the driver imports MLflow's store code (about a second on this project's machines)
  while the slot runs the preflight: imports only, so nothing is written before the
  preflight passes;
- the slot, once its preflight passed, imports its own store code and saves a tiny
  model the way trials log theirs, to a temporary folder: the first ``torch.export`` in
  a process costs over a second of imports and set-up, which the first trial (always a
  new best, so always exporting) would otherwise pay.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path


def _import_store_code(tracking_uri: str) -> None:
    if tracking_uri.startswith(("http://", "https://")):
        import mlflow.store.tracking.rest_store
    else:
        import mlflow.store.model_registry.sqlalchemy_store
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401


def import_store_code_in_background(tracking_uri: str) -> threading.Thread:
    """Import the MLflow store for ``tracking_uri`` on a daemon thread; imports that the
    main thread reaches meanwhile wait for it under Python's import lock."""
    thread = threading.Thread(target=_import_store_code, args=(tracking_uri,),
                              name="tuner-warmup", daemon=True)
    thread.start()
    return thread


def warm_slot(tracking_uri: str, log_models: bool) -> None:
    """Pay a slot's first-use costs before its first trial (see the module's notes)."""
    _import_store_code(tracking_uri)
    if not log_models:
        return
    import mlflow.pytorch
    import torch

    # Two rows, as trials export: one row makes torch.export warn about specialising it.
    module = torch.nn.Linear(2, 1).eval()
    with tempfile.TemporaryDirectory(prefix="tuner-warmup-") as folder:
        mlflow.pytorch.save_model(module, Path(folder) / "model", serialization_format="pt2",
                                  input_example=torch.zeros(2, 2).numpy(),
                                  pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])

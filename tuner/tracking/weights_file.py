"""A trained module's weights and an example input, in one tensors-only file.

Written by a trial that beats the best (tuner.trial.model) and by a model that waits in
the outbox (tuner.tracking.resilient); read back to export the model once. Free of
MLflow: a slot, which never imports MLflow while it trains, writes these files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def save_weights(path: Path, module: torch.nn.Module,
                 example_input: tuple[torch.Tensor, ...]) -> None:
    """Keep a trained module's weights and an example input (tensors only, on CPU) for a
    later export (:func:`load_weights`). Written whole or not at all, and synced: a kill
    mid-write leaves the file that was there before."""
    import torch

    partial = path.with_name(path.name + ".part")
    torch.save({"state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
                "example_input": [x.detach().cpu() for x in example_input]}, partial)
    with partial.open("rb") as handle:
        os.fsync(handle.fileno())
    partial.replace(path)


def load_weights(path: Path) -> tuple[dict[str, torch.Tensor], tuple[torch.Tensor, ...]]:
    """The state dict and example input that :func:`save_weights` kept (no pickle)."""
    import torch

    kept = torch.load(path, weights_only=True)
    return kept["state_dict"], tuple(kept["example_input"])

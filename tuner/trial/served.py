"""The model a study exports and serves: the trained module with its data's scaling.

A data module that scales its data says how (``serving_transforms``: tuner.data.serving).
The exported model then takes raw values and answers in raw units: ``ServedModel`` runs
the input transform, the trained module, the output transform, and all three travel in
the one ``torch.export`` program MLflow logs. Its input example is raw too, so MLflow's
signature and its serving example are what a person sends. A data module that does not
scale (or a module of several inputs) is exported as it was trained.

The trained module's weights stay reachable by name inside the served model (under
``TRAINED``), which a scheduled round reads back to re-validate a champion
(:func:`trained_weights`). Under ``compress`` they are the compressed model's (int8
weights: tuner.trial.evaluate loads them into a module of the same form).
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import OmegaConf

from tuner.trial.build import build_group, rebuild_module

TRAINED = "tuner_trained"  # the trained module's name inside a ServedModel


class ServedModel(torch.nn.Module):
    def __init__(self, trained: torch.nn.Module, inputs: torch.nn.Module | None,
                 outputs: torch.nn.Module | None):
        super().__init__()
        self.tuner_trained = trained  # named TRAINED in the state dict
        self.tuner_input = inputs if inputs is not None else torch.nn.Identity()
        self.tuner_output = outputs if outputs is not None else torch.nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tuner_output(self.tuner_trained(self.tuner_input(x)))


def for_serving(config_yaml: str, module: torch.nn.Module,
                example_input: tuple[torch.Tensor, ...]
                ) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    """``module`` (the trained one, float) as it is exported and served, and its input
    example, raw: compressed first where the config's ``compress.method`` says, by the
    same compression its trial was measured with (tuner.trial.compress). The weights kept
    for an export, and those waiting in the outbox, stay float."""
    cfg = OmegaConf.create(config_yaml)
    settings = cfg.get("compress")
    if settings is not None and settings.method != "none":
        from tuner.trial.compress import compress, plain_tensors

        # int8 weights as plain buffers: exported without pickle, served without torchao
        module = plain_tensors(compress(module, settings))
    datamodule = build_group(cfg, "data")
    transforms = getattr(datamodule, "serving_transforms", None)
    inputs, outputs = transforms() if callable(transforms) else (None, None)
    if (inputs is None and outputs is None) or len(example_input) != 1:
        return module, example_input
    raw = example_input if inputs is None else (inputs.inverse(example_input[0]),)
    return ServedModel(module, inputs, outputs), raw


def trained_weights(state_dict: dict[str, Any]) -> dict[str, Any]:
    """The trained module's weights in a served model's state dict (the state dict as it
    is when the model was exported without transforms)."""
    prefix = f"{TRAINED}."
    if not any(key.startswith(prefix) for key in state_dict):
        return state_dict
    return {key[len(prefix):]: value for key, value in state_dict.items()
            if key.startswith(prefix)}


def rebuild_for_serving(config_yaml: str, state_dict: dict[str, Any],
                        example_input: tuple[torch.Tensor, ...]
                        ) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    """A model that waited in the outbox (kept as the trained module's weights), as it
    is exported: :func:`for_serving` of the module rebuilt from its config."""
    return for_serving(config_yaml, rebuild_module(config_yaml, state_dict), example_input)

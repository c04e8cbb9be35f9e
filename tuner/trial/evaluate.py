"""A trained model measured again on other data: the champion on this round's data.

A scheduled job's champion was measured on the data of the round that trained it. Before
a new round may replace it, the champion is measured on the new round's validation data:
its module is built from its own trial's config (its architecture), its logged weights
are loaded into it, and Lightning's validation runs over the new round's DataModule. No
training happens; the figure is the same metric, read where trials read it.
"""

from __future__ import annotations

import math
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tuner.core.floats import as_computed
from tuner.core.quiet import quiet_lightning
from tuner.trial.build import build_objects, build_trainer
from tuner.trial.served import trained_weights


def validate_weights(model_config_yaml: str, state_dict: dict[str, Any],
                     round_cfg: DictConfig, metric: str) -> float:
    """``metric`` of the module that ``model_config_yaml`` builds, holding
    ``state_dict``, over the validation data of ``round_cfg``.

    Raises when the module cannot be built or take the weights (the architecture
    changed under the same name), when the data does not fit it, or when the metric is
    not logged or not finite."""
    quiet_lightning()
    cfg = OmegaConf.create(model_config_yaml)
    cfg.data = round_cfg.data  # the model as it was trained, the data as it is today
    datamodule, module = build_objects(cfg)
    module.load_state_dict(state_dict, strict=True)
    trainer = build_trainer(round_cfg.trainer, logger=False, devices=1, num_nodes=1,
                            strategy="auto", enable_checkpointing=False)
    trainer.validate(module, datamodule=datamodule, verbose=False)
    value = trainer.callback_metrics.get(metric)
    if value is None:
        logged = ", ".join(sorted(trainer.callback_metrics)) or "nothing"
        raise RuntimeError(f"metric '{metric}' was not logged in validation; the module "
                           f"logged: {logged}")
    if not math.isfinite(float(value)):
        raise FloatingPointError(f"{metric} is {float(value)}")
    return as_computed(float(value))


def logged_weights(model_uri: str) -> dict[str, Any]:
    """The weights of a model tuner logged (MLflow ``pt2``), by parameter name."""
    import mlflow.pytorch

    return trained_weights(dict(mlflow.pytorch.load_model(model_uri).state_dict()))

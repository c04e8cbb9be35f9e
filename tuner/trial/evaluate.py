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
from tuner.core.measures import FLOAT_LATENCY, FLOAT_SIZE, LATENCY, SIZE, float_metric, is_measured
from tuner.core.quiet import quiet_lightning, quiet_torchao
from tuner.trial.build import build_objects, build_trainer, example_input
from tuner.trial.compress import structure_like
from tuner.trial.measure import latency_ms, size_mb, validation_metrics
from tuner.trial.served import trained_weights


def validate_weights(model_config_yaml: str, state_dict: dict[str, Any],
                     round_cfg: DictConfig, metric: str) -> float:
    """``metric`` of the module that ``model_config_yaml`` builds, holding
    ``state_dict``, over the validation data of ``round_cfg``. A compressed champion
    (its config's ``compress.method``) is rebuilt in its compressed form and validated on
    the CPU, as it was measured; ``compressed/<metric>`` is then its ``<metric>``, and
    ``model/size_mb`` or ``model/latency_ms`` are measured again.

    Raises when the module cannot be built or take the weights (the architecture
    changed under the same name), when the data does not fit it, or when the metric is
    not logged or not finite."""
    quiet_lightning()
    cfg = OmegaConf.create(model_config_yaml)
    cfg.data = round_cfg.data  # the model as it was trained, the data as it is today
    datamodule, module = build_objects(cfg)
    settings = cfg.get("compress")
    if settings is None or settings.method == "none":
        module.load_state_dict(state_dict, strict=True)
        # A float champion is its own float model: its float size and latency are these.
        metric = {FLOAT_SIZE: SIZE, FLOAT_LATENCY: LATENCY}.get(metric, metric)
        if is_measured(metric):
            return _measured_again(module, datamodule, settings or round_cfg.compress, metric,
                                   round_cfg.trainer)
        return _validated(module, datamodule, round_cfg, metric)
    module = structure_like(module, settings)
    module.load_state_dict(state_dict, strict=True, assign=True)
    return _measured_again(module, datamodule, settings, metric, round_cfg.trainer)


def _validated(module, datamodule, round_cfg: DictConfig, metric: str) -> float:
    trainer = build_trainer(round_cfg.trainer, logger=False, devices=1, num_nodes=1,
                            strategy="auto", enable_checkpointing=False)
    trainer.validate(module, datamodule=datamodule, verbose=False)
    return _finite(metric, trainer.callback_metrics.get(metric), trainer.callback_metrics)


def _measured_again(module, datamodule, settings, metric: str, trainer_cfg: DictConfig
                    ) -> float:
    """A compressed model's figure on this data (validated on the CPU, as it was measured)."""
    if metric in (FLOAT_SIZE, FLOAT_LATENCY):
        raise ValueError(f"{metric} cannot be measured again: the champion is logged "
                         "compressed, without its float model")
    if metric == SIZE:
        return size_mb(module)
    logged = validation_metrics(module, datamodule, trainer_cfg)  # sets the data up too
    if metric == LATENCY:
        module.eval()  # Lightning's validation put it back in training mode (dropout)
        example = tuple(x[:1].cpu() for x in example_input(module, datamodule))
        return latency_ms(module, example, int(settings.latency_runs),
                          int(settings.latency_warmup), int(settings.latency_threads))
    return _finite(metric, logged.get(float_metric(metric) or metric), logged)


def _finite(metric: str, value, logged) -> float:
    if value is None:
        names = ", ".join(sorted(logged)) or "nothing"
        raise RuntimeError(f"metric '{metric}' was not logged in validation; the module "
                           f"logged: {names}")
    if not math.isfinite(float(value)):
        raise FloatingPointError(f"{metric} is {float(value)}")
    return as_computed(float(value))


def logged_weights(model_uri: str) -> dict[str, Any]:
    """The weights of a model tuner logged (MLflow ``pt2``), by parameter name."""
    import mlflow.pytorch

    quiet_torchao()  # a compressed champion's int8 weights import torchao
    return trained_weights(dict(mlflow.pytorch.load_model(model_uri).state_dict()))

"""The preflight's check of compression: each method the sweep may use compresses the
model, and the compressed model exports.

Whether a model has a layer a method compresses (a Linear, or a Conv when pruning), and
whether ``torch.export`` traces it once compressed (the champion is served from that
program), is known only once the model is built. The preflight's one-batch model is
compressed by every method the sweep may use (the choices of a searched
``compress.method``) and, when models are logged, exported as it would be served, so
that a sweep does not train for hours to fail at its end.
"""

from __future__ import annotations

import lightning.pytorch as pl
from omegaconf import OmegaConf

from tuner.config.plan import SweepPlan, to_yaml
from tuner.core.errors import ConfigError, Problem, describe_error
from tuner.trial.build import example_input
from tuner.trial.compress import NothingToCompress, float_copy
from tuner.trial.served import for_serving


def check_compression(plan: SweepPlan, module: pl.LightningModule,
                      datamodule: pl.LightningDataModule) -> None:
    """Raise a ConfigError naming ``compress.method`` when a method cannot compress the
    preflight's ``module`` or its compressed model cannot be exported."""
    import torch

    assert plan.compression is not None
    where = plan.locate("search.compress.method" if plan.compression.searched
                        else "compress.method")
    try:
        example = example_input(module, datamodule)
    except ValueError as error:
        raise ConfigError(Problem(where, "compress.method", f"cannot measure the model: {error}",
                                  "set the module's example_input_array")) from error
    for method in plan.compression.methods:
        if method == "none":  # the float model, exported as any sweep's is
            continue
        cfg = OmegaConf.merge(plan.cfg, {"compress": {"method": method}})
        # What the export gets: the trained module (float: the preflight trained it with
        # QAT's fake quantization when a trial may, which a trial without QAT never has).
        trained = float_copy(module) if method != "qat" else module
        try:  # compressed as the export compresses it
            served, raw = for_serving(to_yaml(cfg), trained, example)
        except NothingToCompress as error:
            raise ConfigError(Problem(where, "compress.method", str(error),
                                      "compress another way (compress=prune reaches Conv "
                                      "layers too), or leave compress=none")) from error
        if not plan.cfg.tracking.log_models:
            continue
        try:
            torch.export.export(served, tuple(x.cpu() for x in raw))
        except Exception as error:
            raise ConfigError(Problem(
                where, "compress.method",
                f"the model compressed by {method} cannot be exported for serving: "
                f"{describe_error(error)}",
                "choose another compress.method, or set tracking.log_models=false to "
                "measure compressed models without logging one")) from error

"""Config -> Lightning objects: the DataModule, the module and a lean Trainer.

Shared by the preflight (one batch), by every trial and DDP rank, and by the replay of
a model that waited for the tracking server, so all of them build the same objects the
same way.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from tuner.config.machine import launched_by_torchrun
from tuner.config.trainer_checks import CHECKPOINT, PROGRESS_BAR, callback_configs
from tuner.core.quiet import quiet_lightning, quiet_optuna
from tuner.core.upstream import cache_callback_plugin_scan
from tuner.trial.metrics_logger import BatchLogger


def prepare_process(threads: int) -> None:
    """What a process that trains does once (a slot, a DDP rank): its torch threads,
    quiet libraries, Lightning's plugin scan cached."""
    torch.set_num_threads(threads)
    quiet_lightning()
    cache_callback_plugin_scan()  # a Trainer per trial, one scan of the packages
    quiet_optuna()


def locate_target(path: str) -> Any:
    """``hydra.utils.get_object``, without the error Hydra logs before the fast path
    hands the config to Hydra's instantiate, which reports the same error itself."""
    logger = logging.getLogger("hydra.utils")
    quiet, logger.disabled = logger.disabled, True
    try:
        return get_object(path)
    finally:
        logger.disabled = quiet


class BuildError(Exception):
    """``data`` or ``model`` could not be built from its config."""

    def __init__(self, group: str, error: BaseException):
        cause = error.__cause__ or error  # Hydra wraps the constructor's own exception
        self.group, self.cause = group, cause
        super().__init__(f"{group} cannot be built: {type(cause).__name__}: {cause}")


def build_objects(cfg: DictConfig) -> tuple[pl.LightningDataModule, pl.LightningModule]:
    """Instantiate ``cfg.data`` and ``cfg.model`` from their ``_target_``."""
    datamodule, module = build_group(cfg, "data"), build_group(cfg, "model")
    if not isinstance(module, pl.LightningModule):
        raise BuildError("model", TypeError(f"it builds a {type(module).__name__}, not a "
                                            "lightning.pytorch.LightningModule"))
    return datamodule, module


def build_group(cfg: DictConfig, group: str) -> Any:
    """Instantiate ``cfg[group]``; a BuildError names the group when that fails."""
    try:
        return instantiate_flat(cfg[group])
    except Exception as error:
        raise BuildError(group, error) from error


# Keys by which a config asks Hydra for more than "call _target_ with these arguments".
_HYDRA_KEYS = frozenset({"_args_", "_convert_", "_partial_", "_recursive_"})


# What the fast path builds: classes written to be built from a config. Anything else
# (a function, a builtin) goes to Hydra, whose target policy refuses dangerous targets
# (``os.remove``, ``subprocess.run``...), so that a config cannot call them through tuner.
_LIGHTNING_CLASSES = (pl.LightningModule, pl.LightningDataModule)


def instantiate_flat(node: DictConfig) -> Any:
    """``hydra.utils.instantiate(node, _convert_="all")``, the same object and the same
    errors, in a sixth of the time for the usual config: a LightningModule or
    LightningDataModule ``_target_`` with plain arguments. Hydra deep-copies the config
    and walks it node by node on every call (3.3 ms for the digits MLP's data and model
    here, against 0.45 ms to convert them and call their classes), and every trial
    builds both. Anything else goes to Hydra, which builds it, checks it against its
    target policy and words its errors: a config with nested ``_target_``s, Hydra's own
    keys or a missing value (``???``), or a ``_target_`` that does not resolve to such a
    class."""
    try:
        kwargs = OmegaConf.to_container(node, resolve=True, throw_on_missing=True)
        target = kwargs.pop("_target_", None) if isinstance(kwargs, dict) else None
        flat = (isinstance(target, str) and not _HYDRA_KEYS & kwargs.keys()
                and not any(_has_target(value) for value in kwargs.values()))
        call = locate_target(target) if flat else None
    except Exception:
        call = None
    if not (isinstance(call, type) and issubclass(call, _LIGHTNING_CLASSES)):
        return instantiate(node, _convert_="all")
    try:
        return call(**kwargs)
    except Exception as error:  # as Hydra raises it: BuildError reports the cause
        raise InstantiationException(
            f"Error in call to target '{target}':\n{error!r}") from error


def _has_target(value: Any) -> bool:
    if isinstance(value, dict):
        return "_target_" in value or any(_has_target(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_target(v) for v in value)
    return False


def rebuild_module(config_yaml: str, state_dict: dict[str, Any]) -> torch.nn.Module:
    """A trial's trained module again, from its config and its kept weights (float: a
    compressed model is made from them where it is served, tuner.trial.served)."""
    _, module = build_objects(OmegaConf.create(config_yaml))
    module.load_state_dict(state_dict)
    return module


# Lean by default: tuner reports progress for the sweep, not per trial; a config may
# still ask for a model summary or sanity steps.
_LEAN = {"enable_progress_bar": False, "enable_model_summary": False,
         "num_sanity_val_steps": 0}  # the preflight already ran a validation batch
# Keys of ``trainer:`` that are not passed as they are.
_NOT_PASSED = frozenset({"_target_"})


def trainer_kwargs(trainer_cfg: DictConfig) -> dict[str, Any]:
    """Every argument of ``trainer:`` (checked against Lightning's list at check time:
    tuner.config.trainer_checks), with tuner's lean defaults and its readings of a few."""
    t = OmegaConf.to_container(trainer_cfg, resolve=True)
    kwargs = {**_LEAN, **{k: v for k, v in t.items() if k not in _NOT_PASSED}}
    # A config recorded before any argument was allowed under trainer: kept the others
    # in trainer.extra (a champion's, re-validated by a scheduled round).
    kwargs.update(kwargs.pop("extra", None) or {})
    devices, nodes = kwargs.get("devices", 1), kwargs.get("num_nodes", 1)
    spans = isinstance(devices, int) and devices * nodes > 1
    if kwargs.get("strategy", "auto") == "auto" and spans:
        # One process per device and rank 0 reports: tuner launches ranks with
        # Lightning's default (subprocess) launcher, never ddp_spawn's pickling.
        kwargs["strategy"] = "ddp"
    # Lightning clips after unscaling the (accumulated) gradients and before the
    # optimizer step, i.e. once per optimizer step, not per micro-batch. 0 means off.
    kwargs["gradient_clip_val"] = kwargs.get("gradient_clip_val") or None
    if "gradient_clip_algorithm" in kwargs:
        algorithm = kwargs["gradient_clip_algorithm"]
        kwargs["gradient_clip_algorithm"] = str(getattr(algorithm, "value", algorithm))
    for key in ("limit_train_batches", "limit_val_batches"):
        if kwargs.get(key, 0) is None:
            del kwargs[key]  # null: all batches (Lightning's default)
    return kwargs


def build_callbacks(cfg: DictConfig, trial_dir: str | None) -> dict[str, pl.Callback]:
    """The config's own callbacks (``callbacks:``), as tuner runs them in a trial: a
    progress bar left out (slots show none), a ModelCheckpoint writing under the trial's
    folder (tuner.config.trainer_checks says so once, before the sweep).

    Raises BuildError naming ``callbacks.NAME`` when one cannot be built."""
    built = {}
    for name, config in callback_configs(cfg).items():
        try:
            callback = instantiate(config, _convert_="all")
        except Exception as error:
            raise BuildError(f"callbacks.{name}", error) from error
        if not isinstance(callback, pl.Callback):
            raise BuildError(f"callbacks.{name}", TypeError(
                f"it builds a {type(callback).__name__}, not a lightning.pytorch.Callback"))
        kind = type(callback).__name__
        if kind.endswith(PROGRESS_BAR):
            continue
        if kind.endswith(CHECKPOINT) and trial_dir is not None:
            callback.dirpath = os.path.join(trial_dir, "checkpoints")
        built[name] = callback
    return built


def build_trainer(trainer_cfg: DictConfig, *, callbacks: list[pl.Callback] | None = None,
                  logger: Any = False, root_dir: str | None = None, **overrides: Any
                  ) -> pl.Trainer:
    kwargs = trainer_kwargs(trainer_cfg)
    callbacks = list(callbacks or [])
    if isinstance(logger, BatchLogger):
        callbacks.append(logger.epoch_ends)  # per-epoch rows stepped by epoch
    if any(isinstance(c, ModelCheckpoint) for c in callbacks):
        kwargs["enable_checkpointing"] = True  # Lightning refuses one otherwise
    kwargs.update(callbacks=callbacks, logger=logger, default_root_dir=root_dir)
    kwargs.update(overrides)
    if "plugins" not in kwargs:
        environment = _ranks_environment()
        if environment is not None:
            kwargs["plugins"] = [environment]
    return pl.Trainer(**kwargs)


def _ranks_environment() -> Any:
    """Who started this trial's ranks, where Lightning would guess wrong: inside a SLURM
    job (a `tuner worker` that sbatch or launcher=slurm started) Lightning takes SLURM's
    tasks for the ranks and refuses a trial of k devices in a task of one ("number of
    tasks per node ... does not match"). tuner's ranks are never srun's tasks: a slot
    starts them (Lightning's own launcher), or torchrun does. None outside SLURM."""
    from lightning.fabric.plugins.environments import (
        LightningEnvironment,
        SLURMEnvironment,
        TorchElasticEnvironment,
    )

    if not SLURMEnvironment.detect():
        return None
    return TorchElasticEnvironment() if launched_by_torchrun() else LightningEnvironment()


def example_input(module: pl.LightningModule, datamodule: pl.LightningDataModule
                  ) -> tuple[torch.Tensor, ...]:
    """A small input for exporting ``module``: its ``example_input_array`` if it sets one,
    else the first two rows of the first validation batch's input (``batch[0]`` of a
    tuple or list batch, or the batch itself if it is a tensor).

    Raises ValueError when neither gives tensors (e.g. dict batches): the module then
    needs an ``example_input_array``; the trial records why its model was not logged.
    """
    given = getattr(module, "example_input_array", None)
    if given is None:
        batch = next(iter(datamodule.val_dataloader()))
        given = batch[0] if isinstance(batch, list | tuple) else batch
        if isinstance(given, torch.Tensor):
            given = given[:2]
    inputs = tuple(given) if isinstance(given, list | tuple) else (given,)
    if not inputs or not all(isinstance(x, torch.Tensor) for x in inputs):
        raise ValueError(
            f"cannot tell {type(module).__name__}'s input from a {type(given).__name__}; set "
            "self.example_input_array to a tensor (or a tuple of tensors) that forward() takes")
    return inputs

"""Checks of ``trainer:`` and ``callbacks:``, the two groups that go to Lightning as they are.

``trainer:`` takes any ``lightning.Trainer`` argument, so no schema can close it; here
each key is checked against Lightning's own list (a misspelt one is refused with the
nearest names), the keys tuner reads against their types, and the arguments tuner owns
are refused with what to do instead. ``callbacks:`` is a mapping of name to a callback's
config, as lightning-hydra-template writes it; what tuner does with a callback that
cannot work as written inside a sweep is said in a note, once, before the first trial.

Neither check imports Lightning: the driver stays light. The list of arguments is
Lightning's, checked against its signature by tests/test_upstream.py.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tuner.config.compose import Composed
from tuner.config.compose_errors import nearest
from tuner.config.schema import TrainerSchema
from tuner.core.errors import Problem, first_line

# lightning.pytorch.Trainer's arguments (Lightning 2.6).
TRAINER_ARGUMENTS = (
    "accelerator", "strategy", "devices", "num_nodes", "precision", "logger", "callbacks",
    "fast_dev_run", "max_epochs", "min_epochs", "max_steps", "min_steps", "max_time",
    "limit_train_batches", "limit_val_batches", "limit_test_batches",
    "limit_predict_batches", "overfit_batches", "val_check_interval",
    "check_val_every_n_epoch", "num_sanity_val_steps", "log_every_n_steps",
    "enable_checkpointing", "enable_progress_bar", "enable_model_summary",
    "accumulate_grad_batches", "gradient_clip_val", "gradient_clip_algorithm",
    "deterministic", "benchmark", "inference_mode", "use_distributed_sampler", "profiler",
    "detect_anomaly", "barebones", "plugins", "sync_batchnorm",
    "reload_dataloaders_every_n_epochs", "default_root_dir", "enable_autolog_hparams",
    "model_registry",
)

# Arguments tuner sets for every trial, and what to do instead of setting them.
OWNED = {
    "logger": "each trial logs to its own MLflow run through tuner's logger "
              "(self.logger.experiment, self.logger.run_id and log_hyperparams work as with "
              "Lightning's MLFlowLogger); remove trainer.logger",
    "callbacks": "callbacks are their own group, beside tuner's: move them to a callbacks "
                 "file (callbacks: {NAME: {_target_: ...}}) and choose it with callbacks=FILE",
    "default_root_dir": "each trial writes under its own folder (run_dir/trials/STUDY/N); "
                        "remove trainer.default_root_dir, or set run_dir",
    "fast_dev_run": "tuner's preflight already trains one batch before the sweep; remove it",
}
RENAMED = {"extra": "write each Trainer argument directly under trainer: (e.g. "
                    "trainer.benchmark=true), not under trainer.extra"}
TRAINER_TARGETS = ("lightning.pytorch.Trainer", "lightning.pytorch.trainer.Trainer",
                   "lightning.pytorch.trainer.trainer.Trainer", "lightning.Trainer",
                   "pytorch_lightning.Trainer")
# Keys tuner reads itself (the pruner's epochs, the slots' devices...): required.
REQUIRED = ("max_epochs", "accelerator", "devices", "num_nodes", "strategy", "precision")
_TYPED = frozenset(TrainerSchema.__dataclass_fields__)  # keys whose type tuner checks


def trainer(composed: Composed, problems: list[Problem]) -> None:
    node = composed.cfg.get("trainer")
    if not isinstance(node, DictConfig):
        problems.append(Problem(composed.locate("trainer"), "trainer",
                                "must be a mapping of Trainer arguments",
                                "e.g. trainer: {max_epochs: 10, accelerator: cpu}"))
        return
    for key in node:
        _check_key(composed, node, str(key), problems)
    for key in REQUIRED:
        if key not in node:
            problems.append(Problem(composed.locate("trainer"), f"trainer.{key}",
                                    "is required: tuner reads it", f"set trainer.{key}"))


def _check_key(composed: Composed, node: DictConfig, key: str, problems: list[Problem]) -> None:
    full = f"trainer.{key}"
    where = composed.locate(full)
    if key == "_target_":
        if str(node[key]) not in TRAINER_TARGETS:
            problems.append(Problem(where, full, f"'{node[key]}' is not lightning's Trainer: "
                                    "tuner builds a lightning.pytorch.Trainer for each trial",
                                    "remove trainer._target_"))
    elif key in RENAMED:
        problems.append(Problem(where, full, "is not a Trainer argument", RENAMED[key]))
    elif key in OWNED:
        problems.append(Problem(where, full, "is set by tuner for every trial", OWNED[key]))
    elif key == "enable_progress_bar" and node[key]:
        problems.append(Problem(where, full, "slots train without a progress bar: their "
                                "lines would interleave with the sweep's progress, which "
                                "shows each trial", "remove trainer.enable_progress_bar"))
    elif key not in TRAINER_ARGUMENTS:
        near = nearest(key, TRAINER_ARGUMENTS)
        guess = f"did you mean {' or '.join(f'trainer.{k}' for k in near)}? " if near else ""
        problems.append(Problem(where, full, "is not an argument of lightning.Trainer",
                                f"{guess}Lightning's Trainer documentation lists them all"))
    elif key in _TYPED:
        try:
            OmegaConf.merge(OmegaConf.structured(TrainerSchema), {key: node[key]})
        except OmegaConfBaseException as error:
            problems.append(Problem(where, full, first_line(str(error)),
                                    "give a value of the expected type"))


# Callbacks that cannot work as written inside a sweep, by the end of their class name:
# what tuner does with each instead.
PROGRESS_BAR = "ProgressBar"
CHECKPOINT = "ModelCheckpoint"


def callbacks(composed: Composed, problems: list[Problem]) -> list[str]:
    """Check ``callbacks:``; returns a note for each callback tuner changes."""
    node = composed.cfg.get("callbacks")
    if node is None:
        return []
    if not isinstance(node, DictConfig):
        problems.append(Problem(composed.locate("callbacks"), "callbacks",
                                f"must be a mapping of name to a callback's config, got "
                                f"{node!r}", "e.g. callbacks: {early_stopping: {_target_: "
                                "lightning.pytorch.callbacks.EarlyStopping, monitor: val_loss}}"))
        return []
    notes = []
    for name, config in node.items():
        key = f"callbacks.{name}"
        if config is None:
            continue  # switched off, as lightning-hydra-template does with null
        target = config.get("_target_") if isinstance(config, DictConfig) else None
        if not isinstance(target, str) or not target:
            problems.append(Problem(composed.locate(key), f"{key}._target_",
                                    "is missing: each callback names its class",
                                    "e.g. _target_: lightning.pytorch.callbacks.EarlyStopping, "
                                    f"or {key}: null to leave it out"))
            continue
        notes += _note(key, target, config)
    return notes


def _note(key: str, target: str, config: DictConfig) -> list[str]:
    name = target.rsplit(".", 1)[-1]
    if name.endswith(PROGRESS_BAR):
        return [f"{key}: left out; a slot shows no progress bar (the sweep's progress line "
                "shows each trial)"]
    if name.endswith(CHECKPOINT) and config.get("dirpath") is not None:
        return [f"{key}: writes under each trial's folder "
                f"(run_dir/trials/STUDY/N/checkpoints), not {config.dirpath}, so that "
                "trials do not overwrite each other's checkpoints"]
    return []


def callback_configs(cfg: DictConfig) -> dict[str, Any]:
    """The callbacks to build: name -> config, those set to null left out."""
    node = cfg.get("callbacks") or {}
    return {str(name): config for name, config in node.items() if config is not None}

"""The checks behind :func:`tuner.config.plan.make_plan`, one per concern.

Each appends :class:`~tuner.core.errors.Problem` s (file, key, what is wrong, what to
do) to the list it is given instead of raising, so that one run of ``tuner sweep``
reports every problem of a config at once. None of them writes anything: the run dir is
probed by creating and removing a temporary folder.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import optuna
from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig

from tuner.config.compose import Composed
from tuner.config.machine import slot_specs, uses_gpus, visible_gpus
from tuner.config.samplers import (
    GRID_SAMPLER,
    NOP_PRUNER,
    build_pruner,
    build_sampler,
    target_of,
)
from tuner.config.space import SearchSpace
from tuner.core.errors import ConfigError, Problem, describe_error

DIRECTIONS = ("maximize", "minimize")
STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def _as_tuple(value: Any) -> tuple[Any, ...]:
    if isinstance(value, ListConfig | list | tuple):
        return tuple(value)
    return (value,)


def objectives(composed: Composed, problems: list[Problem]) -> tuple[tuple, tuple]:
    cfg = composed.cfg
    metrics, directions = _as_tuple(cfg.metric), _as_tuple(cfg.direction)
    if not metrics or any(not isinstance(m, str) or not m for m in metrics):
        problems.append(Problem(composed.locate("metric"), "metric",
                                f"must be a metric name or a list of them, got {cfg.metric}",
                                "e.g. metric=val_acc or 'metric=[val_acc,param_count]'"))
    elif len(set(metrics)) != len(metrics):
        problems.append(Problem(composed.locate("metric"), "metric", "names a metric twice",
                                "list each metric once"))
    bad = [d for d in directions if d not in DIRECTIONS]
    if bad:
        problems.append(Problem(composed.locate("direction"), "direction",
                                f"'{bad[0]}' is not maximize or minimize",
                                "use direction=maximize or direction=minimize"))
    elif len(directions) != len(metrics):
        problems.append(Problem(composed.locate("direction"), "direction",
                                f"gives {len(directions)} direction(s) for {len(metrics)} "
                                "metric(s)", "give one direction per metric, in the same order"))
    return tuple(metrics), tuple(directions)


def budget(composed: Composed, problems: list[Problem]) -> None:
    cfg = composed.cfg
    if cfg.n_trials < 1:
        problems.append(Problem(composed.locate("n_trials"), "n_trials",
                                f"must be at least 1, got {cfg.n_trials}", "e.g. n_trials=30"))
    if cfg.timeout is not None and cfg.timeout <= 0:
        problems.append(Problem(composed.locate("timeout"), "timeout",
                                f"must be positive seconds or null, got {cfg.timeout}",
                                "e.g. timeout=3600, or timeout=null for no limit"))
    if cfg.max_failures < 0:
        problems.append(Problem(composed.locate("max_failures"), "max_failures",
                                f"must be >= 0, got {cfg.max_failures}",
                                "0 never stops on failures"))
    if cfg.retry_failed < 0:
        problems.append(Problem(composed.locate("retry_failed"), "retry_failed",
                                f"must be >= 0, got {cfg.retry_failed}",
                                "0 repeats no failed trial; e.g. retry_failed=2"))
    if cfg.resume_checkpoint_s is not None and cfg.resume_checkpoint_s < 0:
        problems.append(Problem(composed.locate("resume_checkpoint_s"), "resume_checkpoint_s",
                                f"must be >= 0 seconds or null, got {cfg.resume_checkpoint_s}",
                                "0 saves every epoch, null never; e.g. resume_checkpoint_s=60"))
    if not STUDY_NAME.match(cfg.study_name):
        problems.append(Problem(composed.locate("study_name"), "study_name",
                                f"'{cfg.study_name}' is not a usable name",
                                "use letters, digits, '-', '_' and '.', starting with a letter "
                                "or digit (it names the MLflow experiment and model)"))
    trainer = cfg.trainer
    for key, value, low in (("max_epochs", trainer.max_epochs, 1),
                            ("accumulate_grad_batches", trainer.accumulate_grad_batches, 1),
                            ("check_val_every_n_epoch", trainer.check_val_every_n_epoch, 1)):
        if value < low:
            problems.append(Problem(composed.locate(f"trainer.{key}"), f"trainer.{key}",
                                    f"must be at least {low}, got {value}", f"set it >= {low}"))
    if trainer.check_val_every_n_epoch > trainer.max_epochs:
        problems.append(Problem(composed.locate("trainer.check_val_every_n_epoch"),
                                "trainer.check_val_every_n_epoch",
                                f"validates every {trainer.check_val_every_n_epoch} epochs but "
                                f"trials train for {trainer.max_epochs}: the metric is never "
                                "computed", "make it <= trainer.max_epochs"))


def storage(composed: Composed, problems: list[Problem]) -> None:
    """tuner's own setting in the storage group: how long an outage may last."""
    value = composed.cfg.storage.get("outage_s")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                              or value < 0):
        problems.append(Problem(composed.locate("storage.outage_s"), "storage.outage_s",
                                f"must be seconds >= 0, got {value}",
                                "e.g. storage.outage_s=60 (0: stop at the first failure)"))


def slots(composed: Composed, problems: list[Problem]) -> None:
    """Slots, devices per trial and packing; they must fit this machine."""
    cfg = composed.cfg
    before = len(problems)
    count = cfg.slots
    if count != "auto" and (not isinstance(count, int) or isinstance(count, bool)
                            or count < 1):
        problems.append(Problem(composed.locate("slots"), "slots",
                                f"must be a positive number or auto, got {count}",
                                "e.g. slots=2 (CPU), or slots=auto"))
    for key in ("devices_per_trial", "slots_per_gpu"):
        if cfg[key] < 1:
            problems.append(Problem(composed.locate(key), key,
                                    f"must be at least 1, got {cfg[key]}", f"set {key} >= 1"))
    if cfg.slots_per_gpu > 1 and cfg.devices_per_trial > 1:
        problems.append(Problem(composed.locate("slots_per_gpu"), "slots_per_gpu",
                                f"packs trials onto one GPU, but each trial takes "
                                f"{cfg.devices_per_trial} (devices_per_trial)",
                                "use slots_per_gpu=1 with DDP trials"))
    if cfg.trainer.devices != cfg.devices_per_trial:
        problems.append(Problem(composed.locate("trainer.devices"), "trainer.devices",
                                f"is {cfg.trainer.devices} but devices_per_trial is "
                                f"{cfg.devices_per_trial}; slots hand out devices by "
                                "devices_per_trial", f"set devices_per_trial="
                                f"{cfg.trainer.devices} instead of trainer.devices"))
    if cfg.trainer.num_nodes != 1:
        problems.append(Problem(composed.locate("trainer.num_nodes"), "trainer.num_nodes",
                                "a trial across machines is launched by torchrun or SLURM, "
                                "not by tuner sweep", "run `tuner worker` under torchrun or "
                                "srun (README, Many machines); it reads the node count from "
                                "their environment"))
    if len(problems) > before or cfg.launcher.kind == "slurm":
        return  # under SLURM, each job's worker checks the node it runs on
    if uses_gpus(str(cfg.trainer.accelerator)) and not visible_gpus():
        problems.append(Problem(composed.locate("trainer.accelerator"), "trainer",
                                f"asks for accelerator={cfg.trainer.accelerator}, but this "
                                "machine has no visible GPU",
                                "use trainer=default (or trainer.accelerator=cpu) here"))
        return
    try:
        slot_specs(cfg)
    except ValueError as error:
        problems.append(Problem(composed.locate("slots"), "slots / devices_per_trial",
                                f"do not fit this machine: {error}",
                                "lower slots or devices_per_trial, or use "
                                "trainer.accelerator=cpu"))


TARGET_GROUPS = ("model", "data", "sampler", "pruner", "storage")
# Model and data classes import torch and Lightning: the slot imports them in its
# preflight (tuner.trial.preflight calls check_targets), and the driver stays light and quick.
IMPORTED_IN_SLOT = ("model", "data")


def targets(composed: Composed, problems: list[Problem]) -> None:
    for group in TARGET_GROUPS:
        node = composed.cfg.get(group)
        if not isinstance(node, DictConfig) or "_target_" not in node:
            problems.append(Problem(composed.locate(group), f"{group}._target_",
                                    "is missing", "name the class to build, e.g. "
                                    "_target_: my_package.MyModule"))
    check_targets(composed, problems,
                  [g for g in TARGET_GROUPS if g not in IMPORTED_IN_SLOT])


def check_targets(composed: Composed, problems: list[Problem], groups) -> None:
    """Every `_target_` under ``groups`` must import; configs are code, so this runs
    their imports."""
    for group in groups:
        node = composed.cfg.get(group)
        if not isinstance(node, DictConfig) or "_target_" not in node:
            continue  # reported by targets()
        for key, target in _all_targets(node, group):
            try:
                get_object(target)
            except Exception as error:  # any import failure is the user's to fix
                problems.append(Problem(composed.locate(key), key,
                                        f"cannot import '{target}': "
                                        f"{type(error).__name__}: {error}",
                                        "check the dotted path; is the package installed, or "
                                        "on PYTHONPATH?"))


def _all_targets(node: DictConfig, prefix: str):
    for key, value in node.items():
        if key == "_target_":
            yield f"{prefix}._target_", str(value)
        elif isinstance(value, DictConfig):
            yield from _all_targets(value, f"{prefix}.{key}")


def run_dir(composed: Composed, problems: list[Problem]) -> None:
    """Probe by creating (and removing) a folder where the run dir would be created:
    permission bits alone mislead (root, read-only mounts, /proc)."""
    path = Path(composed.cfg.run_dir)
    existing = path
    while not existing.exists():
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(f"{existing} is a file")
        os.rmdir(tempfile.mkdtemp(prefix=".tuner-probe-", dir=existing))
    except OSError as error:
        problems.append(Problem(composed.locate("run_dir"), "run_dir",
                                f"cannot write under {existing} (to create {path}): "
                                f"{error.strerror or error}",
                                "choose a writable folder, e.g. run_dir=./runs"))


def sampler_and_pruner(composed: Composed, space: SearchSpace, n_metrics: int
                       ) -> list[Problem]:
    """Build both once, without a study, to catch bad arguments before anything runs."""
    cfg, problems = composed.cfg, []
    is_grid = target_of(cfg.sampler) == GRID_SAMPLER
    if is_grid and any(p.when for p in space.params):
        conditional = next(p.path for p in space.params if p.when)
        problems.append(Problem(
            space.where(f"search.{conditional}.when"), f"search.{conditional}.when",
            "the grid sampler crosses every value of every entry, so a conditional entry "
            "repeats the same configuration for each of its values",
            "drop `when` from the search space, or use another sampler"))
    sampler, sampler_problems = _build(composed, "sampler", lambda: build_sampler(cfg, space),
                                       optuna.samplers.BaseSampler)
    pruner, pruner_problems = _build(composed, "pruner", lambda: build_pruner(cfg),
                                     optuna.pruners.BasePruner)
    problems += sampler_problems + pruner_problems
    if n_metrics > 1 and isinstance(sampler, optuna.samplers.CmaEsSampler):
        problems.append(Problem(composed.locate("sampler"), "sampler",
                                "CMA-ES cannot optimise several metrics at once",
                                "use sampler=nsga2 or sampler=tpe for multi-objective"))
    if n_metrics > 1 and pruner is not None and target_of(cfg.pruner) != NOP_PRUNER:
        problems.append(Problem(composed.locate("pruner"), "pruner",
                                f"Optuna cannot prune a multi-objective study "
                                f"({n_metrics} metrics)", "use pruner=none"))
    return problems


def _build(composed: Composed, group: str, build, base: type) -> tuple[Any, list[Problem]]:
    """Build the sampler or pruner; on failure, the problems that say why."""
    try:
        built = build()
    except ConfigError as error:  # e.g. a grid the search space cannot give
        return None, error.problems
    except Exception as error:
        return None, [Problem(composed.locate(group), group,
                              describe_error(error.__cause__ or error),
                              f"fix the {group}'s arguments")]
    if not isinstance(built, base):
        return None, [Problem(composed.locate(group), f"{group}._target_",
                              f"builds a {type(built).__name__}, not an Optuna {group}",
                              f"point it at a class from optuna.{group}s")]
    return built, []

"""The study's sampler and pruner, built from the ``sampler`` and ``pruner`` groups.

Both are whatever class their ``_target_`` names, with the arguments in the config;
tuner only moves the sampler's seed on (below) and hands the grid sampler its grid.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import optuna
from hydra.utils import instantiate
from omegaconf import DictConfig

from tuner.config.space import SearchSpace

SLOT_SEED_STRIDE = 100_003  # a prime: slot seeds stay apart from resume offsets
GRID_SAMPLER = "optuna.samplers.GridSampler"
NOP_PRUNER = "optuna.pruners.NopPruner"


def target_of(node: Any) -> str:
    """The ``_target_`` of a config node, or "" when it has none."""
    return str(node.get("_target_", "")) if isinstance(node, DictConfig) else ""


def build_sampler(cfg: DictConfig, space: SearchSpace, trials_so_far: int = 0, slot: int = 0
                  ) -> optuna.samplers.BaseSampler:
    """The sampler ``cfg.sampler`` names; its seed moves on by the trials the study
    already has, so that a resumed random or QMC sampler does not propose the same
    points again, and differs per slot, so that slots sampling at once do not propose
    the same (except the grid sampler's: see below). Raises ConfigError when a grid
    sampler meets a space with no finite grid."""
    kwargs: dict[str, Any] = {}
    grid = target_of(cfg.sampler) == GRID_SAMPLER
    if cfg.sampler.get("seed") is not None and not grid:
        kwargs["seed"] = int(cfg.sampler.seed) + trials_so_far + SLOT_SEED_STRIDE * slot
    if grid:
        # The grid sampler's seed only shuffles the order of the grid, and a trial
        # records its point as an index into that order: every slot and every rerun
        # must shuffle alike, or two of them train the same point under two indices.
        kwargs["search_space"] = space.grid()
    with _no_experimental_warnings():
        return instantiate(cfg.sampler, **kwargs)


def build_pruner(cfg: DictConfig) -> optuna.pruners.BasePruner:
    """The pruner ``cfg.pruner`` names."""
    with _no_experimental_warnings():
        return instantiate(cfg.pruner)


@contextmanager
def _no_experimental_warnings() -> Iterator[None]:
    """Optuna flags some samplers (QMC, GP) as experimental on every construction; the user
    chose them in a config file, so the warning is noise in a sweep's output."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield

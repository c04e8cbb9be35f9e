"""Search spaces: config paths mapped to Optuna distributions.

A search-space file (a ``search`` group option) maps config paths to distributions::

    model:
      lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
      optimizer: {type: categorical, choices: [sgd, adam]}
      momentum: {type: float, low: 0.0, high: 0.95, when: {model.optimizer: sgd}}
    data.batch_size: {type: categorical, choices: [32, 64, 128]}

Entries may be nested by key (as under ``model``) or written as a flat dotted path (as
``data.batch_size``); both name the same config path. ``when`` samples an entry only when
other entries took the given value(s).

Everything is checked up front: :func:`tuner.config.space_parse.parse` collects every
problem in the file and raises one :class:`~tuner.core.errors.ConfigError`;
:meth:`SearchSpace.check_against` checks each path and each possible value against the
composed config's keys and types.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
)

from tuner.core.errors import ConfigError, Problem, first_line

SEARCHABLE_ROOTS = ("model", "data", "trainer", "compress")
_ABSENT = object()


@dataclass(frozen=True)
class Param:
    """One searched config path; ``path`` is also the Optuna parameter name."""

    path: str
    distribution: BaseDistribution
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # (param path, allowed values)

    def is_active(self, values: Mapping[str, Any]) -> bool:
        return all(values.get(path, _ABSENT) in allowed for path, allowed in self.when)

    def candidates(self) -> list[Any]:
        """Values that stand for the whole range when checking types."""
        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            return list(d.choices)
        return [d.low, d.high]

    def contains(self, value: Any) -> bool:
        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            return value in d.choices
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return d.low <= value <= d.high


@dataclass(frozen=True)
class SearchSpace:
    """An ordered set of params: every param comes after the params its ``when`` names."""

    params: tuple[Param, ...]
    source: str  # the file it was read from, for error messages
    # Finds where one entry came from (an override, a preset); defaults to `source`.
    locate: Callable[[str], str] | None = field(default=None, compare=False, repr=False)

    def where(self, key: str) -> str:
        return self.locate(key) if self.locate else self.source

    def __len__(self) -> int:
        return len(self.params)

    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        """Ask ``trial`` for a value of every param whose conditions hold."""
        values: dict[str, Any] = {}
        for param in self.params:
            if param.is_active(values):
                values[param.path] = _suggest(trial, param.path, param.distribution)
        return values

    def apply(self, cfg: DictConfig, values: Mapping[str, Any], copy: bool = True
              ) -> DictConfig:
        """``cfg`` (a copy of it, unless ``copy`` is False) with each sampled value set at
        its path."""
        out = deepcopy(cfg) if copy else cfg
        for path, value in values.items():
            OmegaConf.update(out, path, value, merge=False)
        return out

    def fingerprint(self) -> str:
        """A short hash of the distributions and conditions; any change alters it."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def to_json(self) -> str:
        return json.dumps(
            [{"path": p.path, "distribution": json.loads(distribution_to_json(p.distribution)),
              "when": {k: list(v) for k, v in p.when}}
             for p in sorted(self.params, key=lambda p: p.path)],
            sort_keys=True)

    def grid(self) -> dict[str, list[Any]]:
        """Every value of every param, for Optuna's GridSampler.

        Raises ConfigError for a float param without ``step``: it has no finite grid.
        """
        grid: dict[str, list[Any]] = {}
        problems = []
        for p in self.params:
            d = p.distribution
            if isinstance(d, CategoricalDistribution):
                grid[p.path] = list(d.choices)
            elif isinstance(d, IntDistribution) and not d.log:
                grid[p.path] = list(range(d.low, d.high + 1, d.step))
            elif isinstance(d, FloatDistribution) and d.step is not None:
                n = round((d.high - d.low) / d.step)
                grid[p.path] = [round(d.low + i * d.step, 12) for i in range(n + 1)]
            else:
                problems.append(Problem(
                    self.where(f"search.{p.path}"), f"search.{p.path}",
                    "the grid sampler needs a finite set of values",
                    "give it a `step` (and no `log`), make it categorical, or use another "
                    "sampler"))
        if problems:
            raise ConfigError(problems)
        return grid

    def check_against(self, cfg: DictConfig, locate: Callable[[str], str] | None = None) -> None:
        """Check that every path exists in ``cfg`` and accepts every value it may take.

        ``locate`` finds the file of a config key, to say where the valid keys are."""
        problems = []
        scratch = deepcopy(cfg)
        for p in self.params:
            key = f"search.{p.path}"
            root = p.path.split(".", 1)[0]
            if root not in SEARCHABLE_ROOTS or "." not in p.path:
                problems.append(Problem(
                    self.where(key), key, f"'{p.path}' cannot be searched",
                    f"search keys under {', '.join(r + '.' for r in SEARCHABLE_ROOTS)} "
                    "e.g. model.lr"))
                continue
            if OmegaConf.select(cfg, p.path, default=_ABSENT) is _ABSENT:
                parent = p.path.rsplit(".", 1)[0]
                node = OmegaConf.select(cfg, parent, default=None)
                known = sorted(node.keys()) if isinstance(node, DictConfig) else []
                where = f" ({locate(parent)})" if locate and known else ""
                problems.append(Problem(
                    self.where(key), key, f"'{p.path}' is not a key of the composed config",
                    f"check the spelling; keys under {parent}{where}: {', '.join(known)}"
                    if known else f"'{parent}' has no keys to search; check the path"))
                continue
            for value in p.candidates():
                try:
                    OmegaConf.update(scratch, p.path, value, merge=False)
                except OmegaConfBaseException as error:
                    problems.append(Problem(
                        self.where(key), key,
                        f"value {value!r} cannot be set at {p.path}: "
                        f"{first_line(str(error))}",
                        "make the distribution produce values of that key's type"))
                    break
        if problems:
            raise ConfigError(problems)


def _suggest(trial: optuna.Trial, name: str, d: BaseDistribution) -> Any:
    if isinstance(d, FloatDistribution):
        return trial.suggest_float(name, d.low, d.high, step=d.step, log=d.log)
    if isinstance(d, IntDistribution):
        return trial.suggest_int(name, d.low, d.high, step=d.step, log=d.log)
    assert isinstance(d, CategoricalDistribution)
    return trial.suggest_categorical(name, d.choices)

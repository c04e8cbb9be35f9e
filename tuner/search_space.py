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

Everything is checked up front: :func:`parse` collects every problem in the file and
raises one :class:`~tuner.errors.ConfigError`; :meth:`SearchSpace.check_against` checks
each path and each possible value against the composed config's keys and types.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
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

from tuner.errors import ConfigError, Problem

SEARCHABLE_ROOTS = ("model", "data", "trainer")
_FIELDS = {
    "float": {"type", "low", "high", "step", "log", "when"},
    "int": {"type", "low", "high", "step", "log", "when"},
    "categorical": {"type", "choices", "when"},
}
_PRIMITIVES = (type(None), bool, int, float, str)
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

    def apply(self, cfg: DictConfig, values: Mapping[str, Any]) -> DictConfig:
        """A copy of ``cfg`` with each sampled value set at its path."""
        out = copy.deepcopy(cfg)
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
        scratch = copy.deepcopy(cfg)
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
                        f"{str(error).splitlines()[0]}",
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


def parse(node: Mapping[str, Any] | DictConfig | None, source: str,
          locate: Callable[[str], str] | None = None) -> SearchSpace:
    """Read a search-space mapping; raise one ConfigError listing every problem.

    Problems name ``source`` as their file, or what ``locate`` says for their key."""
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True)
    problems: list[Problem] = []
    entries: dict[str, dict[str, Any]] = {}
    _collect(node or {}, "", entries, problems, source)
    if not entries and not problems:
        problems.append(Problem(source, "search", "the search space is empty",
                                "add at least one entry, e.g. model.lr: {type: float, "
                                "low: 1.0e-4, high: 1.0e-1, log: true}"))
    params: dict[str, Param] = {}
    for path, spec in entries.items():
        distribution = _distribution(path, spec, problems, source)
        if distribution is not None:
            params[path] = Param(path, distribution)
    conditions = {path: _conditions(path, entries[path].get("when"), params, problems, source)
                  for path in params}
    try:
        if problems:
            raise ConfigError(problems)
        ordered = _order({path: Param(path, params[path].distribution, conditions[path])
                          for path in params}, source)
    except ConfigError as error:
        if locate is not None:
            error = ConfigError([replace(p, where=locate(p.key)) for p in error.problems])
        raise error from None
    return SearchSpace(tuple(ordered), source, locate)


def _collect(node: Mapping[str, Any], prefix: str, out: dict[str, dict[str, Any]],
             problems: list[Problem], source: str) -> None:
    for raw_key, value in node.items():
        path = f"{prefix}{raw_key}"
        key = f"search.{path}"
        if isinstance(value, Mapping) and isinstance(value.get("type"), str):
            if path in out:
                problems.append(Problem(source, key, "is given twice (nested and dotted)",
                                        "keep one of the two entries"))
            out[path] = dict(value)
        elif isinstance(value, Mapping) and value:
            _collect(value, f"{path}.", out, problems, source)
        else:
            problems.append(Problem(
                source, key, f"expected a distribution, got {value!r}",
                "write e.g. {type: float, low: 0.0, high: 1.0} or {type: categorical, "
                "choices: [a, b]}; to fix a value instead, set it in its config group"))


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _distribution(path: str, spec: dict[str, Any], problems: list[Problem], source: str
                  ) -> BaseDistribution | None:
    key = f"search.{path}"
    kind = spec["type"]
    if kind not in _FIELDS:
        problems.append(Problem(source, key, f"unknown type '{kind}'",
                                "use type: float, int or categorical"))
        return None
    unknown = sorted(set(spec) - _FIELDS[kind])
    if unknown:
        problems.append(Problem(source, key,
                                f"unknown field(s) for a {kind} distribution: "
                                f"{', '.join(unknown)}",
                                f"allowed fields: {', '.join(sorted(_FIELDS[kind]))}"))
        return None
    n_before = len(problems)
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            problems.append(Problem(source, key, "categorical needs a non-empty list `choices`",
                                    "e.g. choices: [32, 64, 128]"))
            return None
        bad = [c for c in choices if not isinstance(c, _PRIMITIVES)]
        if bad:
            problems.append(Problem(source, key, f"choices must be str, int, float, bool or "
                                    f"null; got {bad[0]!r}",
                                    "search a scalar instead (e.g. model.width and "
                                    "model.depth rather than a list of layer sizes)"))
        elif len({json.dumps(c) for c in choices}) != len(choices):
            problems.append(Problem(source, key, "choices repeat a value",
                                    "list each choice once"))
        return CategoricalDistribution(choices) if len(problems) == n_before else None

    low, high, step, log = spec.get("low"), spec.get("high"), spec.get("step"), spec.get("log",
                                                                                          False)
    for name, value in (("low", low), ("high", high)):
        if not _is_number(value) or (kind == "int" and not _is_integral(value)):
            problems.append(Problem(source, key, f"`{name}` must be a finite "
                                    f"{'integer' if kind == 'int' else 'number'}, got {value!r}",
                                    f"set {name}: to a number"))
    if not isinstance(log, bool):
        problems.append(Problem(source, key, f"`log` must be true or false, got {log!r}",
                                "write log: true or leave it out"))
    if step is not None and (not _is_number(step) or step <= 0
                             or (kind == "int" and not _is_integral(step))):
        problems.append(Problem(source, key, f"`step` must be a positive "
                                f"{'integer' if kind == 'int' else 'number'}, got {step!r}",
                                "set step: to a positive number or leave it out"))
    if len(problems) > n_before:
        return None
    if low > high:
        problems.append(Problem(source, key, f"low ({low}) is greater than high ({high})",
                                "make low <= high"))
    if log and low <= 0:
        problems.append(Problem(source, key, f"log scale needs low > 0, got low={low}",
                                "raise low above 0 (e.g. 1.0e-6) or drop `log: true`"))
    if log and step is not None and not (kind == "int" and step == 1):
        problems.append(Problem(source, key, "`step` and `log` cannot be combined",
                                "drop one of them"))
    if step is not None and low <= high and not _divides(high - low, step):
        problems.append(Problem(source, key,
                                f"high - low ({high - low:g}) is not a multiple of step ({step})",
                                "adjust high so that the range is a whole number of steps"))
    if len(problems) > n_before:
        return None
    if kind == "int":
        return IntDistribution(int(low), int(high), log=log, step=int(step or 1))
    return FloatDistribution(float(low), float(high), log=log,
                             step=None if step is None else float(step))


def _is_integral(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _divides(span: float, step: float) -> bool:
    ratio = span / step
    return abs(ratio - round(ratio)) < 1e-9 * max(1.0, ratio)


def _conditions(path: str, when: Any, params: Mapping[str, Param], problems: list[Problem],
                source: str) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    if when is None:
        return ()
    key = f"search.{path}.when"
    if not isinstance(when, Mapping) or not when:
        problems.append(Problem(source, key, f"expected a mapping, got {when!r}",
                                "write when: {model.optimizer: sgd} or "
                                "when: {model.optimizer: [sgd, rmsprop]}"))
        return ()
    out = []
    for other, allowed in when.items():
        values = tuple(allowed) if isinstance(allowed, list) else (allowed,)
        if other == path:
            problems.append(Problem(source, key, "an entry cannot depend on itself",
                                    "name another search entry"))
        elif other not in params:
            problems.append(Problem(source, key, f"'{other}' is not an entry of this search "
                                    "space", f"use one of: {', '.join(sorted(params))}"))
        else:
            impossible = [v for v in values if not params[other].contains(v)]
            if impossible:
                problems.append(Problem(source, key, f"{other} can never be "
                                        f"{impossible[0]!r}",
                                        "use values the other entry can take"))
            out.append((other, values))
    return tuple(out)


def _order(params: dict[str, Param], source: str) -> list[Param]:
    """Params in file order, except that each comes after the params it depends on."""
    ordered: list[Param] = []
    state: dict[str, str] = {}

    def visit(path: str, chain: list[str]) -> None:
        if state.get(path) == "done":
            return
        if state.get(path) == "visiting":
            cycle = " -> ".join([*chain[chain.index(path):], path])
            raise ConfigError(Problem(source, f"search.{path}.when",
                                      f"conditions form a cycle: {cycle}",
                                      "make the dependency one-way"))
        state[path] = "visiting"
        for other, _ in params[path].when:
            visit(other, [*chain, path])
        state[path] = "done"
        ordered.append(params[path])

    for path in params:
        visit(path, [])
    return ordered

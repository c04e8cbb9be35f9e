"""Reading a search-space file into a :class:`~tuner.config.space.SearchSpace`.

:func:`parse` collects every problem of the file (unknown types and fields, bounds that
cannot hold, steps that do not divide the range, conditions on entries or values that
do not exist, cycles among conditions) and raises them together in one ConfigError,
each naming the file and the key.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from tuner.config.space import Param, SearchSpace
from tuner.core.errors import ConfigError, Problem

_FIELDS = {
    "float": {"type", "low", "high", "step", "log", "when"},
    "int": {"type", "low", "high", "step", "log", "when"},
    "categorical": {"type", "choices", "when"},
}
_PRIMITIVES = (type(None), bool, int, float, str)


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
    if kind == "categorical":
        return _categorical(key, spec, problems, source)
    return _numeric(key, kind, spec, problems, source)


def _categorical(key: str, spec: dict[str, Any], problems: list[Problem], source: str
                 ) -> CategoricalDistribution | None:
    n_before = len(problems)
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


def _numeric(key: str, kind: str, spec: dict[str, Any], problems: list[Problem], source: str
             ) -> BaseDistribution | None:
    """An int or float distribution; the fields' types first, then how they fit together."""
    n_before = len(problems)
    low, high, step = spec.get("low"), spec.get("high"), spec.get("step")
    log = spec.get("log", False)
    noun = "integer" if kind == "int" else "number"
    for name, value in (("low", low), ("high", high)):
        if not _is_number(value) or (kind == "int" and not _is_integral(value)):
            problems.append(Problem(source, key, f"`{name}` must be a finite {noun}, got "
                                    f"{value!r}", f"set {name}: to a number"))
    if not isinstance(log, bool):
        problems.append(Problem(source, key, f"`log` must be true or false, got {log!r}",
                                "write log: true or leave it out"))
    if step is not None and (not _is_number(step) or step <= 0
                             or (kind == "int" and not _is_integral(step))):
        problems.append(Problem(source, key, f"`step` must be a positive {noun}, got {step!r}",
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

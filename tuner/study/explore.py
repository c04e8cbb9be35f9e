"""PBT's explore step: a copied member's hyperparameters, perturbed or drawn afresh.

Within the search space's own distributions, so that a value never leaves what the
space allows (Ray Tune's users meet perturbations that ignore bounds and log scales):

- a float is multiplied by one of the factors (on a log scale that is a step in log
  space; on a linear one, the same multiplication), then clamped to its bounds and
  rounded to its step;
- an integer moves by at least one step in the factor's direction, clamped;
- a categorical is drawn afresh from its choices (it has no order to step along);
- with probability ``resample`` every mutable value is drawn afresh instead (log-uniform
  where the distribution is log).

Deterministic for a given random generator: the population's decisions are seeded, so
that a decision made again after a kill is the same decision.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

PERTURB, RESAMPLE = "perturb", "resample"


def explore(values: Mapping[str, Any], distributions: Mapping[str, BaseDistribution],
            mutable: Sequence[str], rng: random.Random, factors: Sequence[float],
            resample: float) -> tuple[dict[str, Any], str, dict[str, str]]:
    """``values`` with each key of ``mutable`` that they hold explored; the operation
    ("perturb" or "resample"), and what happened to each key ("x1.2", "resampled")."""
    op = RESAMPLE if rng.random() < resample else PERTURB
    out = dict(values)
    how: dict[str, str] = {}
    for key in mutable:
        if key not in out:  # a conditional key this member does not sample
            continue
        d = distributions[key]
        if op == RESAMPLE or isinstance(d, CategoricalDistribution):
            out[key], how[key] = draw(d, rng), "resampled"
        else:
            factor = rng.choice(list(factors))
            out[key], how[key] = perturb(out[key], d, factor), f"x{factor:g}"
    return out, op, how


def perturb(value: float, d: BaseDistribution, factor: float) -> float | int:
    if isinstance(d, IntDistribution):
        moved = _on_step(value * factor, d.low, d.step)
        if moved == value and factor != 1:
            moved = value + (d.step if factor > 1 else -d.step)
        return int(_clamp(moved, d.low, d.high))
    if not isinstance(d, FloatDistribution):
        raise TypeError(f"cannot perturb a {type(d).__name__}")
    moved = _clamp(value * factor, d.low, d.high)
    return _on_step(moved, d.low, d.step) if d.step else moved


def draw(d: BaseDistribution, rng: random.Random) -> Any:
    """A fresh value of ``d``: uniform, or log-uniform where ``d`` is log."""
    if isinstance(d, CategoricalDistribution):
        return rng.choice(list(d.choices))
    if isinstance(d, IntDistribution):
        if d.log:
            return int(_clamp(round(math.exp(rng.uniform(math.log(d.low), math.log(d.high)))),
                              d.low, d.high))
        return rng.randrange(d.low, d.high + 1, d.step)
    if isinstance(d, FloatDistribution):
        if d.log:
            return math.exp(rng.uniform(math.log(d.low), math.log(d.high)))
        value = rng.uniform(d.low, d.high)
        return _on_step(value, d.low, d.step) if d.step else value
    raise TypeError(f"cannot draw from a {type(d).__name__}")


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def _on_step(value: float, low: float, step: float | int) -> float:
    return low + round((value - low) / step) * step

"""A constructor's arguments as config lines, and the search ranges `tuner init` proposes.

Each argument with a plain default (a number, a bool, a string, a list of them) becomes a
``key: default`` line; one without a default, or whose default cannot be written in YAML
(a module, a function), becomes ``key: ???``, which tuner refuses until it is filled in.

The ranges are a starting point written from the argument's name and default, as
people usually start: rates and decays on a log scale a decade either side of the
default, dropouts and momenta within their usual bounds, sizes from half to twice the
default, batch sizes as powers of two around it, flags both ways. Shapes, counts of
classes, seeds and worker counts are never proposed: they are facts of the data, not
choices.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Any

MISSING_VALUE = "???"
# Arguments that describe the data or the machine, not a choice to tune.
NOT_TUNED = re.compile(r"(seed|workers|classes|input|output|in_features|out_features|vocab|"
                       r"shape|path|dir|file|dim$|^num_features$|val_size|val_fraction|"
                       r"split|block_size|device)", re.IGNORECASE)
LOG_SCALE = re.compile(r"(^lr$|learning_rate|_lr$|^lr_|weight_decay|decay|eps|l2|"
                       r"regulari[sz]ation)", re.IGNORECASE)
UNIT_INTERVAL = re.compile(r"(dropout|drop|momentum|beta|fraction|ratio|^p$|smoothing)",
                           re.IGNORECASE)


@dataclass(frozen=True)
class Argument:
    name: str
    default: Any  # MISSING_VALUE where there is none, or it cannot be written
    annotation: str  # as written in the signature, "" if none

    @property
    def missing(self) -> bool:
        return self.default is MISSING_VALUE


def arguments_of(cls: type) -> list[Argument]:
    """The constructor's named arguments (not ``*args``, ``**kwargs``), in order."""
    found = []
    for param in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = param.default
        if default is param.empty or not _plain(default):
            default = MISSING_VALUE
        annotation = "" if param.annotation is param.empty else (
            param.annotation if isinstance(param.annotation, str)
            else getattr(param.annotation, "__name__", str(param.annotation)))
        found.append(Argument(param.name, default, annotation))
    return found


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | float | str):
        return True
    return isinstance(value, list | tuple) and all(_plain(v) for v in value)


def proposal(argument: Argument) -> dict[str, Any] | None:
    """A search entry for ``argument`` (tuner's search-space form), or None."""
    name, default = argument.name, argument.default
    if argument.missing or NOT_TUNED.search(name):
        return None
    if isinstance(default, bool):
        return {"type": "categorical", "choices": [True, False]}
    if isinstance(default, float | int) and "batch" in name and default >= 2:
        low = max(1, _power_of_two_below(default) // 2)
        return {"type": "categorical", "choices": [low, low * 2, low * 4]}
    if isinstance(default, float):
        return _float_range(name, default)
    if isinstance(default, int):
        if default < 1:
            return None
        return {"type": "int", "low": max(1, default // 2), "high": max(2, default * 2)}
    return None


def _float_range(name: str, default: float) -> dict[str, Any] | None:
    if UNIT_INTERVAL.search(name) and 0.0 <= default < 1.0:
        high = 0.99 if "momentum" in name or "beta" in name else 0.5
        return {"type": "float", "low": 0.0, "high": max(high, default)}
    if LOG_SCALE.search(name):
        if default > 0:
            return {"type": "float", "low": _round(default / 10), "high": _round(default * 10),
                    "log": True}
        return {"type": "float", "low": 1.0e-6, "high": 1.0e-2, "log": True}  # e.g. decay 0
    if default > 0:
        return {"type": "float", "low": _round(default / 4), "high": _round(default * 4),
                "log": True}
    return None


def _power_of_two_below(value: float) -> int:
    power = 1
    while power * 2 <= value:
        power *= 2
    return power


def _round(value: float) -> float:
    return float(f"{value:.3g}")

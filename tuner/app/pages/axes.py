"""Axis ticks that stay readable in a narrow panel.

Over about one decade plotly labels a log axis at every digit (2, 3, ... 9 between the
powers of ten), which piles into a smudge in a panel a few hundred pixels high or wide,
whatever ``nticks`` says. Ticks are chosen here from the values: powers of ten where the
values span two or more, else the 1-2-5 steps between, never more than ``MAX_TICKS``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

MAX_TICKS = 4  # labels on a log axis of a small panel
LOG_TICK_FORMAT = "~g"  # 0.001, 2e-05: as a learning rate is written in a config


def log_axis(values: Iterable[float]) -> dict[str, Any]:
    """Plotly settings of a log axis over ``values`` (positive numbers): a few round
    ticks, written in full. Plotly's own ticks (``nticks``) where no round value lies
    between the smallest and the largest."""
    positive = [float(v) for v in values if v is not None and float(v) > 0]
    settings: dict[str, Any] = {"type": "log", "tickformat": LOG_TICK_FORMAT,
                                "nticks": MAX_TICKS}
    if not positive:
        return settings
    ticks = _round_ticks(min(positive), max(positive))
    if len(ticks) >= 2:
        settings.update(tickmode="array", tickvals=ticks)
    return settings


def _round_ticks(low: float, high: float) -> list[float]:
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    powers = [10.0 ** e for e in range(first, last + 1) if low <= 10.0 ** e <= high]
    steps = [float(f"{m * 10.0 ** e:.12g}") for e in range(first, last + 1)
             for m in (1, 2, 5) if low <= m * 10.0 ** e <= high]
    ticks = powers if len(powers) >= 2 else steps
    every = math.ceil(len(ticks) / MAX_TICKS) or 1
    return ticks[::every]


def tidy_log_axes(figure: Any, values_of: Callable[[str], list[float]]) -> Any:
    """Every log axis of an Optuna figure (a slice's, a contour's: each titled with its
    parameter's name) gets :func:`log_axis` over that parameter's values."""
    for name in list(figure.layout):
        axis = figure.layout[name] if name.startswith(("xaxis", "yaxis")) else None
        if axis is None or axis.type != "log" or not axis.title.text:
            continue
        settings = log_axis(values_of(axis.title.text))
        settings.pop("type")
        axis.update(settings)
    return figure

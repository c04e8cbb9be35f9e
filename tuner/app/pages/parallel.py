"""Optuna's parallel coordinates, readable in a narrow page.

Optuna 5 draws them with a line per trial over x = 0, 1, ... (one x per axis) and writes
each axis's tick labels as annotations to its left. Axes closer than AXIS_PX run those
labels into the neighbour's lines and labels, and MLflow's artifact viewer is a few
hundred pixels wide: the figure asks for that much width (the page scrolls it sideways
where it has less), and of two labels on one axis closer than LABEL_GAP of its height
(a log axis's top value beside its power of ten: 0.0013 over 0.001) one is dropped.
"""

from __future__ import annotations

from typing import Any

import optuna

AXIS_PX = 100  # room for an axis and its labels
COLOUR_BAR_PX = 160  # the objective's colour bar, and the margins
LABEL_GAP = 0.06  # of an axis's height: about a label's height in a 460 px figure


def parallel_coordinates(study: optuna.Study, target: dict[str, Any]) -> Any:
    from optuna import visualization as vis

    figure = vis.plot_parallel_coordinate(study, **target)
    axes = max((len(trace.x) for trace in figure.data
                if trace.mode == "lines" and trace.x is not None), default=0)
    figure.update_layout(width=AXIS_PX * axes + COLOUR_BAR_PX)
    # (Assigned, not updated: update_layout merges a list into the annotations in place.)
    figure.layout.annotations = _spaced(figure.layout.annotations)
    return figure


def _spaced(labels) -> list:
    """The tick labels, none closer than LABEL_GAP to another on its axis: an axis's
    ends first, then the labels between them that have room."""
    kept: list = []
    for label in sorted(labels, key=lambda a: (a.y not in (0, 1), a.y)):
        if all(other.x != label.x or abs(other.y - label.y) >= LABEL_GAP for other in kept):
            kept.append(label)
    return kept

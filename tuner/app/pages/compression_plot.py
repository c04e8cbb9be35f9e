"""A compressing study's models: each trial's float model and its compressed self, and the
front the compressed ones make.

x is the latency for one example (ms, CPU), or the size where the study's cost objective
is the size; y the study's metric. Grey for the float model as trained, a colour per
compression method for the compressed model, a thin line from one to the other (what
compression cost or gained), and the compressed models that no other beats on both
(lower x, better metric) ringed and joined as the front. Hovering a point tells its
trial and its other cost. Optuna's own Pareto plot shows the study's objectives
only; the float model beside its compressed self is tuner's (plotly).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from tuner.core import attrs
from tuner.core.measures import FLOAT_LATENCY, FLOAT_SIZE, LATENCY, SIZE, compressed, float_metric

FLOAT_COLOUR, LINK_COLOUR, FRONT_COLOUR = "#9e9e9e", "#d0d0d0", "#2e7d32"
# The x axis: (compressed, float, title), by latency or, where the study's cost is the
# size, by size.
AXES = {False: (LATENCY, FLOAT_LATENCY, "latency for one example (ms, CPU)"),
        True: (SIZE, FLOAT_SIZE, "size (MB, the state dict saved)")}
METHOD_COLOURS = {"int8": "#1565c0", "prune": "#ef8a00", "qat": "#6a1b9a", "none": "#00897b"}


def compression_figure(trials: Sequence[FrozenTrial], metrics: Sequence[str],
                       directions: Sequence[StudyDirection]) -> Any:
    """The figure, or None when no complete trial was measured or no objective has a
    metric the module logs (a study of sizes and latencies alone)."""
    import plotly.graph_objects as go

    shown = [t for t in trials if t.state == TrialState.COMPLETE
             and t.user_attrs.get(attrs.MEASURED_ATTR)]
    picked = [(float_metric(m), d) for m, d in zip(metrics, directions, strict=True)
              if float_metric(m) is not None]
    if not shown or not picked:
        return None
    metric, direction = picked[0]
    by_size = any(m in (SIZE, FLOAT_SIZE) for m in metrics) and not any(
        m in (LATENCY, FLOAT_LATENCY) for m in metrics)  # the study's own cost, if size
    axes = AXES[by_size]
    points = [_points(t, metric, axes) for t in shown]
    points = [p for p in points if p is not None]
    if not points:
        return None
    figure = go.Figure()
    links_x: list[Any] = []
    links_y: list[Any] = []
    for p in points:
        links_x += [p["float"][0], p["small"][0], None]
        links_y += [p["float"][1], p["small"][1], None]
    figure.add_trace(go.Scatter(x=links_x, y=links_y, mode="lines", hoverinfo="skip",
                                line={"color": LINK_COLOUR, "width": 1}, showlegend=False))
    figure.add_trace(_markers(go, [p for p in points], "float", "float model", FLOAT_COLOUR))
    for method in dict.fromkeys(p["method"] for p in points):
        mine = [p for p in points if p["method"] == method]
        figure.add_trace(_markers(go, mine, "small", f"compressed: {method}",
                                  METHOD_COLOURS.get(method, "#000000")))
    front = _front([p["small"] for p in points], direction == StudyDirection.MAXIMIZE)
    figure.add_trace(go.Scatter(x=[x for x, _ in front], y=[y for _, y in front],
                                mode="lines+markers", name="front (compressed)",
                                hoverinfo="skip",
                                marker={"symbol": "circle-open", "size": 15,
                                        "color": FRONT_COLOUR, "line": {"width": 2}},
                                line={"color": FRONT_COLOUR, "width": 2, "shape": "hv"}))
    figure.update_layout(xaxis_title=axes[2], yaxis_title=metric,
                         legend={"orientation": "h", "y": -0.2})
    return figure


def _points(trial: FrozenTrial, metric: str, axes: tuple[str, str, str]
            ) -> dict[str, Any] | None:
    measured = trial.user_attrs[attrs.MEASURED_ATTR]
    small = measured.get(compressed(metric))
    full = measured.get(metric)  # the float model's, as it ended training
    small_x, float_x, _ = axes
    if small is None or full is None or small_x not in measured:
        return None
    return {"trial": trial.number,
            "method": trial.user_attrs.get(attrs.COMPRESSED_WITH_ATTR, "?"),
            "float": (measured[float_x], full, _other(measured, float_x)),
            "small": (measured[small_x], small, _other(measured, small_x))}


def _other(measured: dict[str, float], x: str) -> str:
    """What the hover says beside the axis: the size on a latency axis, and back."""
    if x in (LATENCY, FLOAT_LATENCY):
        size = measured.get(SIZE if x == LATENCY else FLOAT_SIZE)
        return "" if size is None else f"{size:.3g} MB"
    latency = measured.get(LATENCY if x == SIZE else FLOAT_LATENCY)
    return "" if latency is None else f"{latency:.3g} ms"


def _markers(go, points: list[dict], which: str, name: str, colour: str) -> Any:
    return go.Scatter(
        x=[p[which][0] for p in points], y=[p[which][1] for p in points], mode="markers",
        name=name, marker={"color": colour, "size": 9},
        text=[f"trial {p['trial']}: {p[which][2]}" if p[which][2] else f"trial {p['trial']}"
              for p in points],
        hovertemplate="%{text}<br>%{x:.3g}, %{y:.4g}<extra>" + name + "</extra>")


def _front(points: list[tuple], maximize: bool) -> list[tuple[float, float]]:
    """The points no other beats on both x (lower) and the metric, in the order of x."""
    def beats(a: tuple, b: tuple) -> bool:
        better = a[1] >= b[1] if maximize else a[1] <= b[1]
        strictly = a[0] < b[0] or (a[1] > b[1] if maximize else a[1] < b[1])
        return a[0] <= b[0] and better and strictly

    front = [p for p in points if not any(beats(q, p) for q in points)]
    return sorted((p[0], p[1]) for p in front)

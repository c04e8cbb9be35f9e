"""A PBT study's population over its generations: who copied whom, and the winner's line.

One marker per member and generation (the segment that ended last there: a repeat
replaces the attempt cut short), coloured by its value; a thin grey line where a member
continued its own checkpoint, a dashed orange one where it copied another member's and
explored, and the winner's lineage drawn over them in green. Optuna has no such view (it
has no notion of one trial continuing another), so tuner draws it with plotly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from tuner.core import attrs
from tuner.study.population import lineage, member_of

KEEP_COLOUR, COPY_COLOUR, WINNER_COLOUR = "#b0b0b0", "#ef8a00", "#2e7d32"


def population_figure(trials: Sequence[FrozenTrial], best: FrozenTrial | None,
                      metric: str) -> Any:
    """The figure, or None when no trial is a PBT segment."""
    import plotly.graph_objects as go

    shown = _last_attempts(trials)
    if not shown:
        return None
    figure = go.Figure()
    for op, colour, dash in (("keep", KEEP_COLOUR, "solid"), ("copy", COPY_COLOUR, "dash")):
        xs: list[Any] = []
        ys: list[Any] = []
        for t in shown.values():
            parent = t.user_attrs.get(attrs.PBT_PARENT_ATTR)
            if parent is None or (t.user_attrs.get(attrs.PBT_OP_ATTR) == "keep") != (op == "keep"):
                continue
            start = member_of(trials[int(parent)])
            end = member_of(t)
            if start is None or end is None:
                continue
            xs += [start[1], end[1], None]
            ys += [start[0], end[0], None]
        figure.add_trace(go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip",
                                    name="continued" if op == "keep" else "copied and explored",
                                    line={"color": colour, "dash": dash, "width": 1.5}))
    if best is not None and member_of(best) is not None:
        chain = [member_of(t) for t in lineage(trials, best.number)]
        figure.add_trace(go.Scatter(
            x=[g for _, g in chain], y=[m for m, _ in chain], mode="lines", name="the winner",
            hoverinfo="skip", line={"color": WINNER_COLOUR, "width": 4}))
    figure.add_trace(_markers(go, shown, metric))
    figure.update_layout(
        xaxis={"title": "generation", "dtick": 1},
        yaxis={"title": "member", "dtick": 1, "autorange": "reversed"},
        legend={"orientation": "h", "y": -0.25}, height=140 + 40 * _members(shown))
    return figure


def _last_attempts(trials: Sequence[FrozenTrial]) -> dict[tuple[int, int], FrozenTrial]:
    shown: dict[tuple[int, int], FrozenTrial] = {}
    for t in trials:
        where = member_of(t)
        if where is not None and t.state in (TrialState.COMPLETE, TrialState.FAIL):
            shown[where] = t  # trials come in number order: the later attempt wins
    return shown


def _members(shown: dict[tuple[int, int], FrozenTrial]) -> int:
    return 1 + max(member for member, _ in shown)


def _markers(go: Any, shown: dict[tuple[int, int], FrozenTrial], metric: str) -> Any:
    segments = list(shown.values())
    values = [t.values[0] if t.values else None for t in segments]
    text = [f"trial {t.number}, member {m}, generation {g}<br>"
            f"{t.user_attrs.get(attrs.PBT_OP_ATTR, 'sampled')}"
            + (f" from trial {t.user_attrs[attrs.PBT_PARENT_ATTR]}"
               if attrs.PBT_PARENT_ATTR in t.user_attrs else "")
            + (f"<br>{metric}={v:.4g}" if v is not None else f"<br>{t.state.name}")
            for t, (m, g), v in zip(segments, shown, values, strict=True)]
    return go.Scatter(
        x=[g for _, g in shown], y=[m for m, _ in shown], mode="markers", name=metric,
        text=text, hovertemplate="%{text}<extra></extra>", showlegend=False,
        marker={"size": 14, "color": [v if v is not None else 0 for v in values],
                "colorscale": "Viridis", "showscale": True,
                "colorbar": {"title": metric, "thickness": 12},
                "symbol": ["circle" if v is not None else "x" for v in values],
                "line": {"color": "#333", "width": 1}})

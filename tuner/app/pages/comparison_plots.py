"""The plots of a comparison: convergence on one axis, and where the good trials lie.

Optuna overlays several studies' histories itself (plot_optimization_history takes a
list); it has no plot against wall time and none of parameter distributions across
studies, so those two are drawn here with plotly.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from tuner.app.pages.comparison import Comparison, good_trials
from tuner.app.pages.html import Plot, plot_of

MAX_PARAMS = 12  # distribution panels: beyond this a page stops being readable
PANEL_COLUMNS = 3


def comparison_plots(comparison: Comparison) -> list[Plot]:
    plots: list[Plot] = []
    # With several metrics Optuna's history has no best-so-far line; the wall-time one,
    # drawn here, follows the first metric's best.
    over_trials = ("Convergence over trials (best so far)" if len(comparison.metrics) == 1
                   else f"{comparison.metrics[0]} over trials")
    for title, draw in ((over_trials, _over_trials),
                        (f"Convergence over wall time (best {comparison.metrics[0]} so far)",
                         _over_time),
                        ("Parameters of the good trials (each study's best quarter)",
                         _distributions)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                figure = draw(comparison)
        except Exception as error:  # one plot that cannot be drawn must not stop the rest
            plots.append(Plot(title, note=f"not drawn: {error}"))
            continue
        if figure is None:
            plots.append(Plot(title, note="no trial has completed in these studies"))
        else:
            figure.update_layout(title=None, margin={"t": 30})
            plots.append(plot_of(title, figure))
    return plots


def _complete(comparison: Comparison) -> bool:
    return any(s.best is not None for s in comparison.sides)


def _over_trials(comparison: Comparison) -> Any:
    from optuna.visualization import plot_optimization_history

    if not _complete(comparison):
        return None
    target: dict[str, Any] = {"target_name": comparison.metrics[0]}
    if len(comparison.directions) > 1:
        target["target"] = lambda t: t.values[0]
    return plot_optimization_history([s.study for s in comparison.sides], **target)


def _over_time(comparison: Comparison) -> Any:
    """Best so far against seconds since each study's first trial started."""
    import plotly.graph_objects as go

    if not _complete(comparison):
        return None
    pick = max if comparison.directions[0] == "maximize" else min
    figure = go.Figure()
    for side in comparison.sides:
        trials = side.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        trials = sorted((t for t in trials if t.datetime_complete), key=lambda t:
                        t.datetime_complete)
        if not trials:
            continue
        origin = min(t.datetime_start for t in side.study.get_trials(deepcopy=False)
                     if t.datetime_start)
        best, xs, ys = None, [], []
        for t in trials:
            best = t.values[0] if best is None else pick(best, t.values[0])
            xs.append((t.datetime_complete - origin).total_seconds())
            ys.append(best)
        figure.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=side.name,
                                    line={"shape": "hv"}))
    figure.update_layout(xaxis_title="seconds since the study's first trial",
                         yaxis_title=f"best {comparison.metrics[0]}")
    return figure


def _distributions(comparison: Comparison) -> Any:
    """A panel per parameter: each study's good trials as points over a box."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    maximize = comparison.directions[0] == "maximize"
    good = {s.name: good_trials(s, maximize) for s in comparison.sides}
    kinds = _param_kinds(comparison)
    names = sorted(kinds)[:MAX_PARAMS]
    if not names or not any(good.values()):
        return None
    rows = math.ceil(len(names) / PANEL_COLUMNS)
    figure = make_subplots(rows=rows, cols=PANEL_COLUMNS, subplot_titles=names,
                           horizontal_spacing=0.08,
                           vertical_spacing=min(0.12, 0.9 / max(rows - 1, 1)))
    for i, name in enumerate(names):
        row, col = divmod(i, PANEL_COLUMNS)
        for j, side in enumerate(comparison.sides):
            values = [t.params[name] for t in good[side.name] if name in t.params]
            figure.add_trace(go.Box(
                y=[str(v) for v in values] if kinds[name] == "categorical" else values,
                name=side.name, legendgroup=side.name, showlegend=i == 0,
                boxpoints="all", jitter=0.4, pointpos=0,
                marker_color=qualitative.Plotly[j % len(qualitative.Plotly)]),
                row=row + 1, col=col + 1)
        if kinds[name] == "log":
            figure.update_yaxes(type="log", row=row + 1, col=col + 1)
    figure.update_layout(height=max(320, 260 * rows), boxmode="group")
    figure.update_xaxes(showticklabels=False)
    return figure


def _param_kinds(comparison: Comparison) -> dict[str, str]:
    """Parameter name -> "log", "linear" or "categorical", from the studies' trials."""
    kinds: dict[str, str] = {}
    for side in comparison.sides:
        for trial in side.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            for name, dist in trial.distributions.items():
                if isinstance(dist, CategoricalDistribution):
                    kinds[name] = "categorical"
                elif isinstance(dist, FloatDistribution | IntDistribution):
                    kinds.setdefault(name, "log" if dist.log else "linear")
    return kinds

"""The plots of a comparison: convergence on one axis, and where the good trials lie.

Optuna overlays several studies' histories itself (plot_optimization_history takes a
list); it has no plot against wall time and none of parameter distributions across
studies, so those two are drawn here with plotly. A study has one colour in every
figure of the page (``study_colours``), so the eye follows it from plot to plot.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from tuner.app.pages.axes import log_axis
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


def study_colours(comparison: Comparison) -> dict[str, str]:
    """Study name -> its colour on every figure of the page (plotly's qualitative set,
    in the order the studies were named)."""
    from plotly.colors import qualitative

    palette = qualitative.Plotly
    return {name: palette[i % len(palette)] for i, name in enumerate(comparison.names)}


def _complete(comparison: Comparison) -> bool:
    return any(s.best is not None for s in comparison.sides)


def _over_trials(comparison: Comparison) -> Any:
    from optuna.visualization import plot_optimization_history

    if not _complete(comparison):
        return None
    metric = comparison.metrics[0]
    target: dict[str, Any] = {"target_name": metric}
    if len(comparison.directions) > 1:
        target["target"] = lambda t: t.values[0]
    figure = plot_optimization_history([s.study for s in comparison.sides], **target)
    # Optuna names a study's traces "<metric> of <study>" and "Best Value of <study>" and
    # colours them by their place in the figure; each takes its study's colour here
    # (an infeasible trial's grey stays).
    colours = study_colours(comparison)
    for name, colour in colours.items():
        figure.update_traces(marker_color=colour, selector={"name": f"{metric} of {name}"})
        figure.update_traces(line_color=colour, selector={"name": f"Best Value of {name}"})
    return figure


def _over_time(comparison: Comparison) -> Any:
    """Best so far against seconds since each study's first trial started."""
    import plotly.graph_objects as go

    if not _complete(comparison):
        return None
    pick = max if comparison.directions[0] == "maximize" else min
    colours = study_colours(comparison)
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
                                    line={"shape": "hv", "color": colours[side.name]},
                                    marker_color=colours[side.name]))
    figure.update_layout(xaxis_title="seconds since the study's first trial",
                         yaxis_title=f"best {comparison.metrics[0]}")
    return figure


def _distributions(comparison: Comparison) -> Any:
    """A panel per parameter: each study's good trials as points over a box. A panel
    has a box only for the studies whose good trials have the parameter; its title says
    which have none (a conditional parameter, or another model's), and a parameter
    that none of them has gets no panel."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    maximize = comparison.directions[0] == "maximize"
    good = {s.name: good_trials(s, maximize) for s in comparison.sides}
    kinds = _param_kinds(comparison)
    values = {name: {study: [t.params[name] for t in trials if name in t.params]
                     for study, trials in good.items()} for name in kinds}
    names = sorted(n for n in kinds if any(values[n].values()))[:MAX_PARAMS]
    if not names:
        return None
    rows = math.ceil(len(names) / PANEL_COLUMNS)
    figure = make_subplots(rows=rows, cols=PANEL_COLUMNS,
                           subplot_titles=[_panel_title(n, values[n]) for n in names],
                           horizontal_spacing=0.08,
                           vertical_spacing=min(0.12, 0.9 / max(rows - 1, 1)))
    colours, legend = study_colours(comparison), set()
    for i, name in enumerate(names):
        row, col = divmod(i, PANEL_COLUMNS)
        for study, points in values[name].items():
            if not points:
                continue
            figure.add_trace(go.Box(
                # One place on the x axis per study: a study without the parameter
                # leaves no gap, and each box stands over its name.
                x=[study] * len(points),
                y=[str(v) for v in points] if kinds[name] == "categorical" else points,
                name=study, legendgroup=study, showlegend=study not in legend,
                boxpoints="all", jitter=0.4, pointpos=0, marker_color=colours[study]),
                row=row + 1, col=col + 1)
            legend.add(study)
        if kinds[name] == "log":
            figure.update_yaxes(log_axis(v for p in values[name].values() for v in p),
                                row=row + 1, col=col + 1)
    figure.update_layout(height=max(320, 260 * rows))
    figure.update_xaxes(showticklabels=False)
    return figure


def _panel_title(name: str, values: dict[str, list[Any]]) -> str:
    missing = [study for study, points in values.items() if not points]
    if not missing:
        return name
    return f"{name}<br><sup>not in the good trials of {', '.join(missing)}</sup>"


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

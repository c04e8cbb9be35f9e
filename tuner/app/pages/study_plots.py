"""The plots of one study, from Optuna's plotly visualisations.

Optuna draws the history (with the best so far), the learning curves, parallel
coordinates, importances, slices, contours and the Pareto front. tuner adds two touches
and one plot of its own: pruned trials' learning curves are drawn dashed and named so,
the slices and contours show the most important parameters only, and the timeline shows
trials per slot (Optuna's timeline has a row per trial, which does not show how busy
each slot or GPU was).
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.app.pages.axes import tidy_log_axes
from tuner.app.pages.compression_plot import compression_figure
from tuner.app.pages.html import Plot, duration, plot_of
from tuner.app.pages.lineage_plot import population_figure
from tuner.app.pages.parallel import parallel_coordinates
from tuner.core import attrs
from tuner.study.trial_attrs import trial_attr
from tuner.study.trials import best_trial

TOP_PARAMS = 3  # slices and contours show this many of the most important parameters
# A slice or contour of a parameter (a contour: of both together) sampled in fewer
# complete trials than this share, or than MIN_POINTS, is left out and said so: a
# conditional parameter (momentum under sgd) sampled twice draws a whole contour surface
# from two points.
MIN_SAMPLED_SHARE = 0.5
MIN_POINTS = 3
LEFT_OUT_TITLE = "Slices and contours"
COMPRESSION_TITLE = "Compression: each trial's float model and compressed model, the front in green"
STATE_COLOURS = {"COMPLETE": "#2e7d32", "PRUNED": "#ef8a00", "FAIL": "#c62828",
                 "RUNNING": "#1565c0"}


def study_plots(study: optuna.Study, metrics: tuple[str, ...], *,
                quiet: bool = True) -> list[Plot]:
    """Every plot that ``study``'s trials have data for, in the report's order. A plot
    that Optuna cannot draw (too few trials, one value only) becomes a note, never an
    error: a report is written at any point of a sweep. ``quiet``: silence Optuna's
    experimental-feature warnings here; pass False on a second thread, where
    ``warnings.catch_warnings`` (process-wide state) is not safe, and filter them
    process-wide instead."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        return []
    candidates, notes = _candidates(study, trials, metrics, quiet)
    plots = [_draw(title, draw, quiet) for title, draw in candidates]
    # A note goes under its figure (what the figure left out), or in its place.
    plots = [p if p is not None or title not in notes else Plot(title)
             for p, (title, _) in zip(plots, candidates, strict=True)]
    return [dataclasses.replace(p, note=notes[p.title]) if p.title in notes else p
            for p in plots if p is not None]


@contextlib.contextmanager
def _silenced(quiet: bool) -> Iterator[None]:
    """Optuna's experimental-feature warnings off, unless the caller filters them."""
    if not quiet:
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _draw(title: str, draw: Callable[[], Any], quiet: bool) -> Plot | None:
    try:
        with _silenced(quiet):
            figure = draw()
    except Exception as error:  # one plot that cannot be drawn must not stop the rest
        return Plot(title, note=f"not drawn: {error}")
    if figure is None:
        return None
    figure.update_layout(title=None, margin={"t": 30})
    return plot_of(title, figure)


def _candidates(study: optuna.Study, trials: list[FrozenTrial], metrics: tuple[str, ...],
                quiet: bool) -> tuple[list[tuple[str, Callable[[], Any]]], dict[str, str]]:
    """The plots to draw, (title, draw) in the report's order, and the notes shown under
    some of them (title -> words)."""
    from optuna import visualization as vis

    # With several metrics the single-objective plots show the first; importances are
    # computed for *low* values of a given target, so a maximised one is negated there.
    target: dict[str, Any] = {"target_name": metrics[0]}
    several_metrics = len(study.directions) > 1
    if several_metrics:
        target["target"] = lambda t: t.values[0]
    top = top_params(study, quiet)
    candidates: list[tuple[str, Callable[[], Any]]] = []
    if several_metrics:
        candidates.append(("Pareto front", lambda: vis.plot_pareto_front(
            study, target_names=list(metrics))))
    if any(attrs.MEASURED_ATTR in t.user_attrs for t in trials):
        candidates.append((COMPRESSION_TITLE,
                           lambda: compression_figure(trials, metrics, study.directions)))
    # With several metrics Optuna draws the first one's values but no best-so-far line.
    history = (f"Optimisation history of {metrics[0]}" if several_metrics
               else "Optimisation history (best so far)")
    candidates.append((history, lambda: vis.plot_optimization_history(study, **target)))
    if any(attrs.PBT_MEMBER_ATTR in t.user_attrs for t in trials):
        candidates.append(("Population: who copied whom, the winner's lineage in green",
                           lambda: population_figure(trials, best_trial(study), metrics[0])))
    if any(t.intermediate_values for t in trials):
        candidates.append(("Learning curves, pruned trials dashed",
                           lambda: learning_curves(study, metrics[0])))
    if len(top) > 1:
        candidates += [
            (f"Parameter importances for {metrics[0]}", lambda: vis.plot_param_importances(
                study, **_importance_target(study, metrics))),
            ("Parallel coordinates", lambda: parallel_coordinates(study, target))]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    slices, notes = _slices_and_contours(study, complete, top, target)
    candidates += slices
    candidates.append(("Timeline: trials per slot", lambda: slot_timeline(trials)))
    return candidates, notes


def _slices_and_contours(study: optuna.Study, complete: list[FrozenTrial], top: list[str],
                         target: dict[str, Any]
                         ) -> tuple[list[tuple[str, Callable[[], Any]]], dict[str, str]]:
    """Slices of the top parameters sampled in enough complete trials, a contour of the
    first two of them when enough trials have both; a note names what was left out."""
    from optuna import visualization as vis

    sliced = [p for p in top if _sampled_enough(complete, [p])]
    pair = sliced[:2] if len(sliced) > 1 and _sampled_enough(complete, sliced[:2]) else []
    candidates: list[tuple[str, Callable[[], Any]]] = []
    def values_of(param: str) -> list[float]:
        return [t.params[param] for t in complete if isinstance(t.params.get(param), float)]

    if sliced:
        title = (f"Slices of the top {len(sliced)} parameters" if len(sliced) > 1
                 else f"Slice of {sliced[0]}")
        candidates.append((title, lambda: tidy_log_axes(
            vis.plot_slice(study, params=sliced, **target), values_of)))
    if pair:
        candidates.append(("Contours of the top 2 parameters", lambda: tidy_log_axes(
            vis.plot_contour(study, params=pair, **target), values_of)))
    note = _left_out_note(complete, [p for p in top if p not in sliced],
                          sliced[:2] if len(sliced) > 1 and not pair else [])
    if not note:
        return candidates, {}
    if not candidates:  # nothing to hang the note under: it stands in their place
        return [(LEFT_OUT_TITLE, lambda: None)], {LEFT_OUT_TITLE: note}
    return candidates, {candidates[-1][0]: note}


def _sampled_enough(complete: list[FrozenTrial], params: list[str]) -> bool:
    return _sampled(complete, params) >= max(MIN_POINTS, MIN_SAMPLED_SHARE * len(complete))


def _sampled(complete: list[FrozenTrial], params: list[str]) -> int:
    return sum(all(p in t.params for p in params) for t in complete)


def _left_out_note(complete: list[FrozenTrial], unsliced: list[str], no_pair: list[str]
                   ) -> str:
    """Words for what the slices and contours leave out, or "" when nothing."""
    if not unsliced and not no_pair:
        return ""
    n = len(complete)
    words = [f"{p} is left out: sampled in {_sampled(complete, [p])} of the {n} complete "
             "trials." for p in unsliced]
    if no_pair:
        words.append(f"No contour: {' and '.join(no_pair)} were sampled together in "
                     f"{_sampled(complete, no_pair)} of them.")
    words.append(f"A slice is drawn for a parameter sampled in at least half of the complete "
                 f"trials and {MIN_POINTS} or more, a contour for two sampled together so.")
    return " ".join(words)


def _importance_target(study: optuna.Study, metrics: tuple[str, ...]) -> dict[str, Any]:
    target = _first_metric_target(study)
    return {"target_name": metrics[0], **({"target": target} if target else {})}


def _first_metric_target(study: optuna.Study) -> Callable[[FrozenTrial], float] | None:
    """Importances for the first metric in its own direction. With one metric Optuna
    reads the direction from the study (None); a given target is always taken as "lower
    is better" (and Optuna warns), so a maximised one is negated."""
    if len(study.directions) == 1:
        return None
    sign = -1 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1
    return lambda t: sign * t.values[0]


def top_params(study: optuna.Study, quiet: bool = True) -> list[str]:
    """The study's most important parameters (at most TOP_PARAMS), by Optuna's default
    importance evaluator; by name when importances cannot be computed yet."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    varied = sorted({k for t in complete for k in t.params
                     if len({repr(u.params.get(k)) for u in complete}) > 1})
    if len(varied) <= 1:
        return varied
    try:
        with _silenced(quiet):
            # Optuna 5 ranks a conditional parameter (momentum under sgd) with the
            # others, over the trials that have it: the slices and contours check that
            # enough trials do (_sampled_enough).
            ranked = optuna.importance.get_param_importances(
                study, target=_first_metric_target(study))
        ranked_names = [k for k in ranked if k in varied]
        return (ranked_names or varied)[:TOP_PARAMS]
    except Exception:  # e.g. too few trials for the evaluator: the names still help
        return varied[:TOP_PARAMS]


def learning_curves(study: optuna.Study, metric: str) -> Any:
    """Optuna's intermediate-values plot with pruned trials drawn dashed, in orange,
    and named so: the point of pruning is seen at a glance. The axis names the metric
    (Optuna's says "Intermediate Value"), each curve is "trial N" in a legend, and its
    hover says the trial, the epoch and the value in full (Optuna's cut the name)."""
    from optuna import visualization as vis

    figure = vis.plot_intermediate_values(study)
    trials = study.get_trials(deepcopy=False)
    pruned = {t.number for t in trials if t.state == TrialState.PRUNED}
    for trace in figure.data:
        number = int(str(trace.name).removeprefix("Trial"))
        name = f"trial {number}" + (" (pruned)" if number in pruned else "")
        trace.update(name=name, hovertemplate=f"{name}<br>epoch %{{x}}: {metric} %{{y:.4g}}"
                     "<extra></extra>")
        if number in pruned:
            trace.update(line={"dash": "dot", "color": STATE_COLOURS["PRUNED"]})
    figure.update_layout(xaxis_title="epoch", yaxis_title=metric, showlegend=True,
                         legend={"title": {"text": "trial"}})
    epochs = max((len(t.intermediate_values) for t in trials), default=0)
    if epochs <= 20:  # whole epochs only (plotly would put ticks at 1.5)
        figure.update_xaxes(dtick=1)
    return figure


def slot_timeline(trials: list[FrozenTrial]) -> Any:
    """A bar per trial on its slot's row (the slot's "host:pid"), from start to end,
    coloured by state: gaps between bars are time a slot or GPU sat idle."""
    import plotly.graph_objects as go

    started = [t for t in trials if t.datetime_start is not None]
    if not started:
        return None
    figure = go.Figure()
    for state, colour in STATE_COLOURS.items():
        rows = [t for t in started if t.state.name == state]
        if not rows:
            continue
        ends = [t.datetime_complete or max(u.datetime_complete or u.datetime_start
                                           for u in started) for t in rows]
        seconds = [(end - t.datetime_start).total_seconds() for t, end in
                   zip(rows, ends, strict=True)]
        figure.add_trace(go.Bar(
            name=state, orientation="h", marker_color=colour,
            base=[t.datetime_start.isoformat() for t in rows],
            x=[s * 1000 for s in seconds],  # a date axis counts lengths in milliseconds
            y=[trial_attr(t, attrs.OWNER_ATTR, "unknown slot") for t in rows],
            text=[f"trial {t.number}" for t in rows], textposition="inside",
            # On a date axis %{x} is a date, not the bar's length: the length is written
            # out here, as a person reads it.
            customdata=[duration(s) for s in seconds],
            hovertemplate="%{text}: started %{base|%H:%M:%S}, took %{customdata}"
                          "<extra>%{fullData.name}</extra>"))
    figure.update_layout(barmode="overlay", xaxis={"type": "date", "title": "time"},
                         yaxis={"title": "slot (host:pid)"})
    return figure


def warm_plots() -> None:
    """Draw every plot of the report once, on a small made-up study, and pack plotly.js.

    The first drawing in a process imports plotly's figure classes, scikit-learn
    (importances) and SciPy: seconds that the end of the sweep would otherwise pay. The
    driver calls this on its warm-up thread while its slots start (tuner.app.warmup),
    with Optuna's experimental-feature warnings filtered process-wide."""
    from tuner.app.pages.html import plotly_bundle

    study = optuna.create_study(direction="maximize")
    space = {"x": optuna.distributions.FloatDistribution(0, 1),
             "y": optuna.distributions.IntDistribution(0, 3)}
    for n in range(4):
        trial = study.ask(space)
        trial.report(n / 8, 0)
        study.tell(trial, n / 4)
    study_plots(study, ("value",), quiet=False)
    plotly_bundle()

"""The end of a sweep: champion, leaderboard and report on the study's parent run.

Everything here is recomputed from the study, so it is safe to run at the end of every
invocation (a resumed sweep rewrites the same artifacts with more trials in them).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import optuna
from mlflow.entities import Metric, RunTag
from optuna.trial import FrozenTrial, TrialState

import tuner.dashboards
from tuner.config.plan import SweepPlan
from tuner.core import attrs
from tuner.study.trials import best_trial
from tuner.tracking import tags
from tuner.tracking.links import model_uri_of, run_id_of
from tuner.tracking.registry import Champion, promote
from tuner.tracking.runs import Tracker

TEMPLATE = Path(tuner.dashboards.__file__).with_name("report.html.j2")
LEADERBOARD_ROWS = 50  # rows in the report and the parent run's tags


@dataclass(frozen=True)
class Summary:
    best: FrozenTrial | None
    champion: Champion | None
    champion_note: str  # why there is no champion, or ""
    counts: dict[str, int]  # trials per state name
    pending: int = 0  # MLflow records still waiting in the outbox (tuner sync writes them)


def trial_counts(study: optuna.Study) -> dict[str, int]:
    return {s.name: len(study.get_trials(deepcopy=False, states=(s,)))
            for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}


def leaderboard(study: optuna.Study, metrics: tuple[str, ...]) -> list[dict]:
    """One row per trial: COMPLETE trials best first, then PRUNED, then FAIL."""
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    order = {TrialState.COMPLETE: 0, TrialState.PRUNED: 1, TrialState.FAIL: 2}

    def key(t: FrozenTrial):
        if t.values:
            value = t.values[0]
        else:  # a pruned trial ranks by its last reported value
            value = t.intermediate_values.get(max(t.intermediate_values, default=0), math.nan)
        score = value if not maximize else -value
        return order.get(t.state, 3), math.inf if math.isnan(score) else score  # NaN last

    rows = []
    study_attrs = study.user_attrs
    for t in sorted(study.get_trials(deepcopy=False, states=tuple(order)), key=key):
        row = {"trial": t.number, "state": t.state.name}
        for i, metric in enumerate(metrics):
            row[metric] = t.values[i] if t.values else None
        row["epochs"] = max(t.intermediate_values, default=None)
        row["seconds"] = (round(t.duration.total_seconds(), 2) if t.duration else None)
        row.update(t.params)
        row["run_id"] = run_id_of(t, study_attrs)
        rows.append(row)
    return rows


def finalize(plan: SweepPlan, study: optuna.Study, tracker: Tracker) -> Summary:
    counts = trial_counts(study)
    best = best_trial(study)
    champion, note = _champion(plan, best, tracker, study.user_attrs)
    rows = leaderboard(study, plan.metrics)
    _log_parent(plan, tracker, best, rows, counts)
    if plan.cfg.tracking.report:
        html = render_report(plan, study, rows, best, champion, counts)
        tracker.client.log_text(tracker.parent_run_id, html, "report.html")
    return Summary(best, champion, note, counts)


def _champion(plan: SweepPlan, best: FrozenTrial | None, tracker: Tracker,
              study_attrs: dict) -> tuple[Champion | None, str]:
    if best is None:
        return None, "no trial has completed"
    if not plan.cfg.tracking.register_champion:
        return None, "tracking.register_champion is false"
    uri = model_uri_of(best, study_attrs)
    if uri is None:
        why = best.user_attrs.get(attrs.MODEL_ERROR_ATTR)
        return None, (f"trial {best.number}'s model could not be exported: {why}" if why
                      else f"trial {best.number} has no logged model (tracking.log_models "
                           "was off when it ran)")
    champion = promote(tracker.client, plan.study_name, uri, run_id_of(best, study_attrs),
                       best.values[0], plan.directions[0], best.number)
    return champion, ""


def _log_parent(plan: SweepPlan, tracker: Tracker, best: FrozenTrial | None,
                rows: list[dict], counts: dict[str, int]) -> None:
    run_id = tracker.parent_run_id
    client = tracker.client
    finished = counts["COMPLETE"] + counts["PRUNED"]
    now = int(datetime.now(UTC).timestamp() * 1000)
    metrics = [Metric(f"trials_{state.lower()}", n, now, finished) for state, n in counts.items()]
    run_tags: list[RunTag] = []
    if best is not None:
        metrics += [Metric(f"best_{m}", v, now, finished)
                    for m, v in zip(plan.metrics, best.values, strict=True)]
        run_tags.append(RunTag(tags.BEST_TRIAL, str(best.number)))
        run_tags += [RunTag(f"{tags.BEST_PARAM_PREFIX}{k}", str(v)) for k, v in
                     best.params.items()]
        # A conditional param of an earlier best (momentum under sgd) must not linger.
        current = {t.key for t in run_tags}
        for key in client.get_run(run_id).data.tags:
            if key.startswith(tags.BEST_PARAM_PREFIX) and key not in current:
                client.delete_tag(run_id, key)
    client.log_batch(run_id, metrics=metrics, tags=run_tags)
    client.log_text(run_id, json.dumps(rows, indent=1, default=str), "leaderboard.json")
    client.log_text(run_id, _csv(rows), "leaderboard.csv")
    if best is not None:
        client.log_text(run_id, json.dumps({"trial": best.number, "values": best.values,
                                            "params": best.params}, indent=1, default=str),
                        "best.json")
        client.log_text(run_id, best.user_attrs.get(attrs.CONFIG_ATTR, ""), "best_config.yaml")


def _csv(rows: list[dict]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def render_report(plan: SweepPlan, study: optuna.Study, rows: list[dict],
                  best: FrozenTrial | None, champion: Champion | None,
                  counts: dict[str, int]) -> str:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(TEMPLATE.parent),
                      autoescape=select_autoescape(["html", "j2"]))
    columns: list[str] = []
    for row in rows[:LEADERBOARD_ROWS]:
        columns += [c for c in row if c not in columns and c != "run_id"]
    return env.get_template(TEMPLATE.name).render(
        study=plan.study_name, metrics=plan.metrics, directions=plan.directions,
        counts=counts, n_trials=plan.cfg.n_trials, best=best, champion=champion,
        rows=rows[:LEADERBOARD_ROWS], columns=columns, plots=_plots(plan, study),
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))


def _plots(plan: SweepPlan, study: optuna.Study) -> list[tuple[str, str]]:
    """(title, base64 PNG) for each Optuna plot that the study has data for."""
    return draw_plots(study, plan.metrics, epochs=plan.reports_epochs,
                      several_params=len(plan.space) > 1)


def draw_plots(study: optuna.Study, metrics: tuple[str, ...], *, epochs: bool,
               several_params: bool) -> list[tuple[str, str]]:
    """The report's plots of ``study``: with several ``metrics`` its Pareto front, else
    its history, learning curves (``epochs``: trials report per epoch) and, with
    ``several_params``, parameter importances and parallel coordinates."""
    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 2:
        return []
    plots = []
    for title, draw in _candidates(study, metrics, epochs, several_params):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                png = _render(draw)
            plots.append((title, base64.b64encode(png).decode()))
        except Exception as error:  # one plot that cannot be drawn must not stop the rest
            plots.append((f"{title}: not drawn ({type(error).__name__}: {error})", ""))
    return plots


def _candidates(study: optuna.Study, metrics: tuple[str, ...], epochs: bool,
                several_params: bool) -> list[tuple[str, Callable[[], Any]]]:
    from optuna.visualization import matplotlib as vis

    # One objective: Optuna reads it, and its direction, from the study. With several,
    # the plots show the first; importances are computed for *low* values of a given
    # target, so a maximised one is negated there.
    first: dict[str, Any] = {"target_name": metrics[0]}
    for_importance = first
    if len(metrics) > 1:
        first = {**first, "target": lambda t: t.values[0]}
        sign = -1 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1
        for_importance = {**first, "target": lambda t: sign * t.values[0]}
        candidates = [("Pareto front", lambda: vis.plot_pareto_front(
                          study, target_names=list(metrics)))]
    else:
        candidates = [("Optimisation history", lambda: vis.plot_optimization_history(study))]
        if epochs:
            candidates.append(("Learning curves (per epoch)",
                               lambda: vis.plot_intermediate_values(study)))
    if several_params:
        candidates += [("Parameter importance",
                        lambda: vis.plot_param_importances(study, **for_importance)),
                       ("Parallel coordinates",
                        lambda: vis.plot_parallel_coordinate(study, **first))]
    return candidates


def _render(draw: Callable[[], Any]) -> bytes:
    """PNG bytes of the figure that ``draw`` makes."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    ax = draw()
    fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
    fig.set_size_inches(9, 5)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def warm_plots() -> None:
    """Draw each of the report's plots once, on a small made-up study.

    The first drawing in a process imports scikit-learn (parameter importances), SciPy
    and Pillow and loads fonts: seconds that the end of the sweep would otherwise pay.
    The driver calls this on its warm-up thread while its slots start (tuner.app.warmup),
    with Optuna's experimental-feature warnings already filtered: ``catch_warnings``
    changes process-wide state, so a second thread must not use it."""
    study = optuna.create_study(direction="maximize")
    space = {"x": optuna.distributions.FloatDistribution(0, 1),
             "y": optuna.distributions.IntDistribution(0, 3)}
    for n in range(4):
        trial = study.ask(space)
        trial.report(n / 8, 0)
        study.tell(trial, n / 4)
    for _, draw in _candidates(study, ("value",), epochs=True, several_params=True):
        _render(draw)

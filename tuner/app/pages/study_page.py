"""A study's report: counts, the best trial, a leaderboard and the plots, as one page.

Everything is read from the Optuna study, so the report can be written at any time:
at the end of a sweep (logged on the parent run), or by ``tuner report`` while the
sweep still runs.
"""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.app.compression import leaderboard_columns
from tuner.app.lineage import winner_schedule
from tuner.app.pages.html import render
from tuner.app.pages.run_links import LOCAL_UI, run_link, tracking_url
from tuner.app.pages.study_plots import study_plots
from tuner.core import attrs
from tuner.study.trials import best_trial, metric_names
from tuner.tracking.links import run_id_of

TEMPLATE = "report.html.j2"
LEADERBOARD_ROWS = 50  # rows in the report and the parent run's tags
SHOWN_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)


def trial_counts(study: optuna.Study) -> dict[str, int]:
    """Finished trials per state name: what the budget and the parent run count."""
    return {s.name: len(study.get_trials(deepcopy=False, states=(s,)))
            for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}


def leaderboard(study: optuna.Study, metrics: tuple[str, ...]) -> list[dict]:
    """One row per finished trial: COMPLETE trials best first, then PRUNED, then FAIL."""
    return _rows(study, metrics, (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))


def _rows(study: optuna.Study, metrics: tuple[str, ...],
          states: tuple[TrialState, ...]) -> list[dict]:
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    order = {state: i for i, state in enumerate(states)}

    def key(t: FrozenTrial):
        if t.values:
            value = t.values[0]
        else:  # a pruned trial ranks by its last reported value
            value = t.intermediate_values.get(max(t.intermediate_values, default=0), math.nan)
        score = value if not maximize else -value
        return order[t.state], math.inf if math.isnan(score) else score  # NaN last

    rows = []
    study_attrs = study.user_attrs
    # Several metrics: no one best trial, but a front of trials no other beats on all.
    front = ({t.number for t in study.best_trials} if len(study.directions) > 1
             else None)
    for t in sorted(study.get_trials(deepcopy=False, states=states), key=key):
        row: dict[str, Any] = {"trial": t.number, "state": t.state.name}
        if front is not None:
            row["pareto"] = "yes" if t.number in front else None
        for i, metric in enumerate(metrics):
            row[metric] = t.values[i] if t.values else None
        row["epochs"] = max(t.intermediate_values, default=t.user_attrs.get(attrs.EPOCHS_ATTR))
        row["seconds"] = (round(t.duration.total_seconds(), 2) if t.duration else None)
        row.update(leaderboard_columns(t, metrics))  # beside the objectives, before params
        row.update(t.params)
        row["run_id"] = run_id_of(t, study_attrs)
        rows.append(row)
    return rows


def render_study_report(study: optuna.Study, *, tracking_uri: str,
                        champion: Any = None) -> str:
    """The report page of ``study`` as HTML. ``champion``: the registry's champion, when
    the caller knows it (the end of a sweep)."""
    metrics = metric_names(study)
    rows = _rows(study, metrics, SHOWN_STATES)
    counts = {**trial_counts(study),
              "RUNNING": len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))}
    shown = rows[:LEADERBOARD_ROWS]
    columns: list[str] = []
    for row in shown:
        columns += [c for c in row if c not in columns and c != "run_id"]
    url = tracking_url(tracking_uri)
    best = best_trial(study)
    # A trial whose run waits in the outbox ("pending:N") has no page in MLflow yet.
    links = {row["trial"]: run_link(url, row["run_id"]) for row in shown
             if row["run_id"] and not row["run_id"].startswith("pending")}
    return render(
        TEMPLATE, study=study.study_name, metrics=metrics,
        directions=[d.name.lower() for d in study.directions],
        counts=counts, n_trials=study.user_attrs.get(attrs.N_TRIALS_ATTR),
        best=best, champion=champion, rows=shown,
        schedule=[] if best is None else winner_schedule(study.get_trials(deepcopy=False), best),
        front=(sorted(row["trial"] for row in rows if row.get("pareto"))
               if len(study.directions) > 1 else None),
        more_rows=max(0, len(rows) - LEADERBOARD_ROWS), columns=columns,
        links=links, local_ui=url == LOCAL_UI,
        plots=study_plots(study, metrics))

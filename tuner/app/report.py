"""The end of a sweep: champion, leaderboard and report (tuner.app.pages) on the parent run.

Everything here is recomputed from the study, so it is safe to run at the end of every
invocation (a resumed sweep rewrites the same artifacts with more trials in them).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime

import optuna
from mlflow.entities import Metric, RunTag
from optuna.trial import FrozenTrial

from tuner.app.pages.study_page import leaderboard, render_study_report, trial_counts
from tuner.config.plan import SweepPlan
from tuner.core import attrs
from tuner.study.trials import best_trial
from tuner.tracking import tags
from tuner.tracking.links import model_error_of, model_uri_of, run_id_of
from tuner.tracking.registry import Champion, promote
from tuner.tracking.runs import Tracker


@dataclass(frozen=True)
class Summary:
    best: FrozenTrial | None
    champion: Champion | None
    champion_note: str  # why there is no champion, or ""
    counts: dict[str, int]  # trials per state name
    pending: int = 0  # MLflow records still waiting in the outbox (tuner sync writes them)


def finalize(plan: SweepPlan, study: optuna.Study, tracker: Tracker) -> Summary:
    counts = trial_counts(study)
    best = best_trial(study)
    champion, note = choose_champion(plan, best, tracker, study.user_attrs)
    rows = leaderboard(study, plan.metrics)
    _log_parent(plan, tracker, best, rows, counts)
    if plan.cfg.tracking.report:
        html = render_study_report(study, tracking_uri=plan.cfg.tracking.tracking_uri,
                                   champion=champion)
        tracker.client.log_text(tracker.parent_run_id, html, "report.html")
    return Summary(best, champion, note, counts)


def choose_champion(plan: SweepPlan, best: FrozenTrial | None, tracker: Tracker,
                    study_attrs: dict) -> tuple[Champion | None, str]:
    """Move the ``champion`` alias to the best trial's model if it beats the current
    champion; the champion, or why there is none."""
    if best is None:
        return None, "no trial has completed"
    if not plan.cfg.tracking.register_champion:
        return None, "tracking.register_champion is false"
    uri = model_uri_of(best, study_attrs)
    if uri is None:
        return None, _no_model(best, study_attrs)
    champion = promote(tracker.client, plan.study_name, uri, run_id_of(best, study_attrs),
                       best.values[0], plan.directions[0], best.number)
    return champion, ""


def describe_champion(champion: Champion) -> str:
    """The champion in a line, as the commands print it."""
    moved = "promoted to" if champion.promoted else "still"
    return (f"champion: {moved} models:/{champion.name}@champion (version {champion.version}, "
            f"trial {champion.trial_number})")


def _no_model(best: FrozenTrial, study_attrs: dict) -> str:
    why = model_error_of(best, study_attrs)
    if why:
        return f"trial {best.number}'s model could not be exported: {why}"
    kept = best.user_attrs.get(attrs.MODEL_WEIGHTS_ATTR)
    if kept is not None:
        return (f"trial {best.number}'s model is not exported yet: its weights are kept at "
                f"{kept} on the machine that trained it; `tuner sync` there exports them, "
                "as does the end of the next sweep or worker of this study there")
    return (f"trial {best.number} has no logged model (tracking.log_models was off when it "
            "ran)")


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

"""The end of a sweep: champion, leaderboard and report (tuner.app.pages) on the parent run.

Everything here is recomputed from the study, so it is safe to run at the end of every
invocation (a resumed sweep rewrites the same artifacts with more trials in them).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import optuna
from mlflow.entities import Metric, RunTag
from optuna.trial import FrozenTrial

from tuner.app.champion import crown, sweep_contest
from tuner.app.lineage import winner_schedule
from tuner.app.pages.study_page import leaderboard, render_study_report, trial_counts
from tuner.config.plan import SweepPlan
from tuner.core import attrs
from tuner.study.trial_attrs import trial_attr
from tuner.study.trials import best_trial
from tuner.tracking import tags
from tuner.tracking.registry import Champion
from tuner.tracking.runs import Tracker


@dataclass(frozen=True)
class Summary:
    best: FrozenTrial | None
    champion: Champion | None
    champion_note: str  # why there is no champion, or ""
    counts: dict[str, int]  # trials per state name
    pending: int = 0  # MLflow records still waiting in the outbox (tuner sync writes them)
    schedule: list[dict] = field(default_factory=list)  # strategy=pbt: the best's lineage


def finalize(plan: SweepPlan, study: optuna.Study, tracker: Tracker,
             phase: Callable[[str], None] = lambda text: None) -> Summary:
    """``phase``: told what comes next (the champion, the report), to say it."""
    counts = trial_counts(study)
    best = best_trial(study)
    if plan.cfg.tracking.register_champion:
        phase("choosing the champion")
        verdict = crown(plan, study, tracker.client, sweep_contest(plan), best)
        champion, note = (verdict.champion, "") if verdict.decision != "none" else (None,
                                                                                  verdict.why)
    else:
        champion, note = None, "tracking.register_champion is false"
    phase("writing the leaderboard and the report" if plan.cfg.tracking.report
          else "writing the leaderboard")
    rows = leaderboard(study, plan.metrics)
    _log_parent(plan, tracker, best, rows, counts)
    if plan.cfg.tracking.report:
        html = render_study_report(study, tracking_uri=plan.cfg.tracking.tracking_uri,
                                   champion=champion)
        tracker.client.log_text(tracker.parent_run_id, html, "report.html")
    schedule = ([] if best is None or plan.population is None
                else winner_schedule(study.get_trials(deepcopy=False), best))
    return Summary(best, champion, note, counts, schedule=schedule)


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
        client.log_text(run_id, trial_attr(best, attrs.CONFIG_ATTR, ""), "best_config.yaml")


def _csv(rows: list[dict]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()

"""A PBT segment's lineage as its MLflow run shows it.

Tags: its member, generation, epochs, how its values came from its parent's, and its
parent's trial and run (so MLflow's runs table can be filtered by member, and a run leads
to the one it continues). Metrics: each mutable hyperparameter at every epoch the segment
trains (``hp/model.lr`` at steps 5 and 6 for its 5th and 6th epochs), on the step axis of the
per-epoch metrics, so that a member's schedule reads as one curve across its segments.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import optuna
from mlflow.entities import RunTag

from tuner.config.plan import SweepPlan
from tuner.core import attrs
from tuner.core.results import MetricRow
from tuner.tracking import tags
from tuner.tracking.metric_rows import log_metric_rows
from tuner.trial.order import SegmentOrder

if TYPE_CHECKING:
    from tuner.tracking.runs import Tracker


def lineage_tags(study: optuna.Study, trial: optuna.Trial) -> dict[str, str]:
    user = trial.user_attrs
    start, end = user[attrs.PBT_EPOCHS_ATTR]
    found = {tags.PBT_MEMBER: str(user[attrs.PBT_MEMBER_ATTR]),
             tags.PBT_GENERATION: str(user[attrs.PBT_GENERATION_ATTR]),
             tags.PBT_EPOCHS: f"{start + 1}-{end}",
             tags.PBT_OP: str(user.get(attrs.PBT_OP_ATTR, "sampled"))}
    parent = user.get(attrs.PBT_PARENT_ATTR)
    if parent is not None:
        found[tags.PBT_PARENT_TRIAL] = str(parent)
        parent_run = study.get_trials(deepcopy=False)[int(parent)].user_attrs.get(
            attrs.RUN_ID_ATTR)
        if parent_run is not None:
            found[tags.PBT_PARENT_RUN] = str(parent_run)
    return found


def log_lineage(tracker: Tracker, run_id: str, segment_tags: dict[str, str],
                rows: list[MetricRow]) -> None:
    """The segment's tags and hyperparameter rows on its run (in the run writer)."""
    tracker.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in segment_tags.items()])
    log_metric_rows(tracker.client, run_id, rows)


def schedule_rows(plan: SweepPlan, params: dict[str, Any], segment: SegmentOrder
                  ) -> list[MetricRow]:
    """``hp/<key>`` of each mutable numeric value, at each epoch the segment trains."""
    assert plan.population is not None
    now = int(time.time() * 1000)
    return [(f"{tags.HP_PREFIX}{key}", float(params[key]), now, step)
            for key in plan.population.mutable
            if isinstance(params.get(key), int | float) and not isinstance(params[key], bool)
            for step in range(segment.start_epoch + 1, segment.end_epoch + 1)]

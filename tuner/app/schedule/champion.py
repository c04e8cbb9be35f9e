"""A scheduled round's champion decision: the contest, and its record.

The job's ``champion`` is the registered model named after the job. A round's best
trial (the challenger) replaces it only if it beats the champion *measured on this
round's validation data* (tuner.trial.evaluate) by more than the job's margin: a
champion's own figure was measured on the data of the round that trained it, which may
have changed since. tuner.app.champion decides and registers, as for any champion;
this module measures, and records the decision on the round's parent run and in the
job's history.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from tuner.app.schedule.jobs import Job
from tuner.config.plan import SweepPlan
from tuner.core import attrs


@dataclass(frozen=True)
class Decision:
    decision: str  # "promoted", "kept" or "none" (nothing to promote)
    why: str
    challenger: float | None = None  # the round's best value
    champion_before: dict[str, Any] | None = None  # version, value when it was promoted
    champion_now: float | None = None  # the champion's value on this round's data
    champion_after: dict[str, Any] | None = None

    def record(self) -> dict[str, Any]:
        return {"decision": self.decision, "why": self.why, "challenger": self.challenger,
                "champion_before": self.champion_before, "champion_now": self.champion_now,
                "champion_after": self.champion_after}

    def describe(self) -> str:
        return f"champion {self.decision}: {self.why}"


def decide(plan: SweepPlan, job: Job, study: optuna.Study, best: FrozenTrial | None
           ) -> Decision:
    """Measure, decide, move the alias if the challenger wins, and say so on the round's
    parent run."""
    from mlflow import MlflowClient

    from tuner.app.champion import Contest, crown

    uri = plan.cfg.tracking.tracking_uri
    client = MlflowClient(uri, registry_uri=uri)
    contest = Contest(job.name, measure=lambda current: champion_on_round_data(client, current,
                                                                             plan),
                      margin=job.margin, on_what="on this round's data")
    verdict = crown(plan, study, client, contest, best)
    before = _version(verdict.before)
    after = _version(verdict.champion) if verdict.decision == "promoted" else before
    decision = Decision(verdict.decision, verdict.why, verdict.challenger, before,
                        verdict.measured if verdict.before is not None else None, after)
    _on_parent_run(client, study, plan, decision)
    return decision


def _version(champion) -> dict[str, Any] | None:
    if champion is None:
        return None
    return {"version": champion.version, "value": champion.value,
            "trial": champion.trial_number}


def champion_on_round_data(client, current, plan: SweepPlan) -> float:
    """The champion's metric on this round's validation data: its own trial's config
    builds the module, its logged weights go in, Lightning validates (tuner.trial.evaluate)."""
    from pathlib import Path
    from tempfile import TemporaryDirectory

    from tuner.app.schedule.environment import scoped_env
    from tuner.tracking.tags import CHAMPION_ALIAS
    from tuner.trial.evaluate import logged_weights, validate_weights

    # MLflow draws a progress bar for every download: noise in a round's log.
    with (TemporaryDirectory(prefix="tuner-champion-") as folder,
          scoped_env("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")):
        config_yaml = Path(client.download_artifacts(current.run_id, "config.yaml",
                                                     folder)).read_text()
    weights = logged_weights(f"models:/{current.name}@{CHAMPION_ALIAS}")
    return validate_weights(config_yaml, weights, plan.cfg, plan.metrics[0])


def _on_parent_run(client, study: optuna.Study, plan: SweepPlan, decision: Decision) -> None:
    from mlflow.entities import Metric, RunTag

    from tuner.core.masking import mask
    from tuner.tracking import tags

    run_id = study.user_attrs.get(attrs.PARENT_RUN_ATTR)
    if run_id is None:
        return
    metric = plan.metrics[0]
    figures = [(f"challenger_{metric}", decision.challenger),
               (f"champion_{metric}_on_round_data", decision.champion_now)]
    now_ms = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, v, now_ms, 0) for k, v in figures
                                      if v is not None],
                     tags=[RunTag(tags.DECISION, decision.decision),
                           RunTag(tags.DECISION_WHY, mask(decision.why)[:5000])])

"""Champion against challenger, on the data of the round that asks.

The job's ``champion`` is the registered model named after the job. A round's best
trial (the challenger) replaces it only if it beats the champion *measured on this
round's validation data* (tuner.trial.evaluate) by more than the job's margin: a
champion's own figure was measured on the data of the round that trained it, which may
have changed since.

- no champion yet: the challenger becomes the first;
- the champion cannot be measured on today's data (its architecture no longer builds,
  the data no longer fits it): the challenger replaces it, and the record says why;
- the challenger has no logged model (its export failed, or tracking.log_models is
  off): nothing moves.
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
from tuner.core.results import reason_of


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


def beats(challenger: float, champion: float, direction: str, margin: float) -> bool:
    """True when ``challenger`` is better than ``champion`` by more than ``margin``:
    the registry's own comparison, against the champion moved by the margin."""
    from tuner.core.results import is_better

    bar = champion + margin if direction == "maximize" else champion - margin
    return is_better(challenger, bar, direction)


def decide(plan: SweepPlan, job: Job, study: optuna.Study, best: FrozenTrial | None
           ) -> Decision:
    """Measure, decide, move the alias if the challenger wins, and say so on the round's
    parent run."""
    from mlflow import MlflowClient

    from tuner.tracking.links import model_error_of, model_uri_of, run_id_of
    from tuner.tracking.registry import current_champion, register_champion

    uri = plan.cfg.tracking.tracking_uri
    client = MlflowClient(uri, registry_uri=uri)
    current = current_champion(client, job.name)
    before = None if current is None else {"version": current.version, "value": current.value,
                                           "trial": current.trial_number}
    if best is None:
        decision = Decision("none", "no trial of this round completed", None, before)
    elif (model_uri := model_uri_of(best, study.user_attrs)) is None:
        why = model_error_of(best, study.user_attrs) or "tracking.log_models is off"
        decision = Decision("none", f"the round's best (trial {best.number}) has no logged "
                                    f"model: {why}", best.values[0], before)
    else:
        challenger = best.values[0]
        verdict, now, why = _against(plan, job, client, current, challenger)
        after = before
        if verdict:
            version = register_champion(client, job.name, model_uri,
                                        run_id_of(best, study.user_attrs), challenger,
                                        best.number)
            after = {"version": version.version, "value": challenger, "trial": best.number}
        decision = Decision("promoted" if verdict else "kept", why, challenger, before, now,
                            after)
    _on_parent_run(client, study, plan, decision)
    return decision


def _against(plan: SweepPlan, job: Job, client, current, challenger: float
             ) -> tuple[bool, float | None, str]:
    """(promote?, the champion's value on this round's data, why)."""
    metric, direction = plan.metrics[0], plan.directions[0]
    if current is None:
        return True, None, f"the first champion of job {job.name} ({metric}={challenger:.6g})"
    try:
        now = champion_on_round_data(client, current, plan)
    except Exception as error:
        return True, None, (f"the champion (version {current.version}) could not be measured "
                            f"on this round's data ({reason_of(error)}); the challenger "
                            f"({metric}={challenger:.6g}) replaces it")
    margin = f" by more than {job.margin:g}" if job.margin else ""
    if beats(challenger, now, direction, job.margin):
        return True, now, (f"the challenger ({metric}={challenger:.6g}) beats the champion "
                           f"on this round's data ({metric}={now:.6g}){margin}")
    return False, now, (f"the champion on this round's data ({metric}={now:.6g}) is not "
                        f"beaten{margin} by the challenger ({metric}={challenger:.6g})")


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

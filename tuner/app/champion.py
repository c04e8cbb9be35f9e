"""The champion: the one place it is decided and registered.

A study's best trial (the challenger) becomes the ``champion`` of a registered model
when it beats the current champion; :func:`crown` compares, moves the alias and says
why. Every command that can move a champion calls it: the end of a sweep and of
``tuner sync`` (through tuner.app.report.finalize, also when the end waited in the
outbox), a worker that exported the best model, and a scheduled round.

What the challenger is measured against is a :class:`Contest`:

- a sweep's: the champion's own value, recorded on its model version when it was
  promoted (the registered model is named after the study);
- a scheduled round's: the champion measured again on this round's validation data,
  beaten by more than the job's margin (the registered model is named after the job;
  tuner.app.schedule.champion measures). A champion that cannot be measured any more
  (its architecture no longer builds, the data no longer fits it) is replaced.

Nothing moves when the challenger has no logged model (its export failed, or
``tracking.log_models`` is off): the verdict says why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import optuna
from mlflow import MlflowClient
from optuna.trial import FrozenTrial

from tuner.app.compression import served_value
from tuner.config.plan import SweepPlan
from tuner.core import attrs
from tuner.core.results import is_better, reason_of
from tuner.study.trial_attrs import trial_attr
from tuner.study.trials import best_trial
from tuner.tracking.links import model_error_of, model_uri_of, run_id_of
from tuner.tracking.registry import Champion, current_champion, register_champion


@dataclass(frozen=True)
class Contest:
    name: str  # the registered model
    # The current champion's value to beat; None: its recorded value (a sweep's contest).
    measure: Callable[[Champion], float] | None = None
    margin: float = 0.0  # how much better than that the challenger must be
    on_what: str = ""  # where the champion was measured, in a sentence ("on this round's data")


@dataclass(frozen=True)
class Verdict:
    decision: str  # "promoted", "kept" or "none" (nothing to promote)
    why: str
    champion: Champion | None  # the champion after the decision
    challenger: float | None = None  # the challenger's value
    before: Champion | None = None  # the champion before it
    measured: float | None = None  # the champion's value the challenger was held against


def sweep_contest(plan: SweepPlan) -> Contest:
    return Contest(plan.study_name)


def crown(plan: SweepPlan, study: optuna.Study, client: MlflowClient, contest: Contest,
          best: FrozenTrial | None = None) -> Verdict:
    """Compare the study's best trial (``best``, if the caller just read it) with the
    champion of ``contest.name``; register it and move the alias if it wins."""
    best = best_trial(study) if best is None else best
    before = current_champion(client, contest.name)
    if best is None:
        return Verdict("none", "no trial has completed", before, None, before)
    uri = model_uri_of(best, study.user_attrs)
    if uri is None:
        return Verdict("none", no_model(best, study.user_attrs), before, best.values[0], before)
    # The champion is the model served: a compressed trial's is its compressed model.
    challenger, metric = served_value(best, plan.metrics[0])
    run_id, direction = run_id_of(best, study.user_attrs), plan.directions[0]
    said = f"{metric}={challenger:.6g}"
    if before is not None and before.run_id == run_id:
        return Verdict("kept", f"trial {best.number} ({said}) is the champion already",
                       before, challenger, before, before.value)
    measured, why = _measure(before, contest, challenger, said)
    if why is None:
        bar = measured + contest.margin if direction == "maximize" else measured - contest.margin
        margin = f" by more than {contest.margin:g}" if contest.margin else ""
        where = f" {contest.on_what}" if contest.on_what else ""
        if not is_better(challenger, bar, direction):
            return Verdict("kept", f"the champion{where} ({metric}={measured:.6g}) is not "
                                   f"beaten{margin} by trial {best.number} ({said})",
                           before, challenger, before, measured)
        why = (f"trial {best.number} ({said}) beats the champion{where} "
               f"({metric}={measured:.6g}){margin}")
    champion = register_champion(client, contest.name, uri, run_id, challenger, best.number,
                                 metric)
    return Verdict("promoted", why, champion, challenger, before, measured)


def _measure(before: Champion | None, contest: Contest, challenger: float, said: str
             ) -> tuple[float | None, str | None]:
    """The champion's value to beat, or why the challenger wins without one."""
    if before is None:
        return None, f"the first champion of {contest.name} ({said})"
    if contest.measure is None:
        return before.value, None
    try:
        return contest.measure(before), None
    except Exception as error:
        return None, (f"the champion (version {before.version}) could not be measured "
                      f"{contest.on_what} ({reason_of(error)}); the challenger ({said}) "
                      "replaces it")


def describe(verdict: Verdict) -> str:
    """The verdict in a line, as the commands print it."""
    if verdict.decision == "none" or verdict.champion is None:
        return f"no champion registered: {verdict.why}"
    return describe_champion(verdict.champion)


def describe_champion(champion: Champion) -> str:
    moved = "promoted to" if champion.promoted else "still"
    return (f"champion: {moved} models:/{champion.name}@champion (version {champion.version}, "
            f"trial {champion.trial_number})")


def no_model(best: FrozenTrial, study_attrs: dict) -> str:
    """Why the best trial has no logged model to register."""
    why = model_error_of(best, study_attrs)
    if why:
        return f"trial {best.number}'s model could not be exported: {why}"
    kept = trial_attr(best, attrs.MODEL_WEIGHTS_ATTR)
    if kept is not None:
        return (f"trial {best.number}'s model is not exported yet: its weights are kept at "
                f"{kept} on the machine that trained it; `tuner sync` there exports them, "
                "as does the end of the next sweep or worker of this study there")
    return (f"trial {best.number} has no logged model (tracking.log_models was off when it "
            "ran)")


def crown_after_export(plan: SweepPlan, study: optuna.Study, tracker, exported: str | None
                       ) -> str | None:
    """The best trial's weights were kept on this machine, so only its command could
    export the model: the sweep that started the study may have ended without it, so
    the champion moves here (only if the model wins, as at a sweep's end). Returns
    ``exported`` with the champion's line when it moved."""
    if exported is None or not plan.cfg.tracking.register_champion:
        return exported
    verdict = crown(plan, study, tracker.client, sweep_contest(plan))
    if verdict.decision == "promoted":
        exported += f"; {describe(verdict)}"
    return exported

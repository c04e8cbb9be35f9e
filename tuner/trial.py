"""One trial: sample -> config -> Lightning objects -> fit -> objective values.

The trial's own seed is ``seed + trial.number``: two trials with the same params still
differ by seed (as repeated runs would), and a trial is reproducible from its number.

Failures are results, not exceptions: anything a trial raises (a bad sample, a shape
error, a NaN objective, CUDA out of memory) comes back as a FAIL result with the
reason, so that the sweep goes on. ``KeyboardInterrupt`` and ``SystemExit`` are not
caught here; the sweep records them as interruptions.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import lightning.pytorch as pl
import optuna
from omegaconf import OmegaConf
from optuna.trial import TrialState

from tuner.plan import SweepPlan
from tuner.pruning import OptunaPruning
from tuner.tracking import tags
from tuner.tracking.registry import log_trial_model
from tuner.tracking.runs import Tracker
from tuner.training import build_objects, build_trainer, example_input


@dataclass
class TrialResult:
    number: int
    state: TrialState
    values: list[float] | None = None
    reason: str | None = None  # why it failed
    pruned_at: int | None = None  # epoch at which it was pruned
    run_id: str | None = None
    seconds: float = 0.0


def reason_of(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:500]


def run_trial(plan: SweepPlan, trial: optuna.Trial, tracker: Tracker,
              beats_best: Callable[[float], bool]) -> TrialResult:
    """Train one trial; its MLflow run is created here and left for the caller to end."""
    start = time.monotonic()
    result = TrialResult(trial.number, TrialState.FAIL)
    try:
        params = plan.space.sample(trial)
        cfg = plan.trial_config(params)
        seed = plan.cfg.seed + trial.number
        config_yaml = OmegaConf.to_yaml(cfg)
        trial.set_user_attr(tags.SEED_ATTR, seed)
        trial.set_user_attr(tags.CONFIG_ATTR, config_yaml)
        result.run_id = tracker.start_trial(trial.number, {**params, "seed": seed}, config_yaml)
        trial.set_user_attr(tags.RUN_ID_ATTR, result.run_id)
        _fit(plan, trial, tracker, cfg, seed, result, beats_best)
    except Exception as error:
        result.state, result.values = TrialState.FAIL, None
        result.reason = reason_of(error)
        if result.run_id is not None:
            tracker.log_error(result.run_id, traceback.format_exc())
    result.seconds = time.monotonic() - start
    return result


def _fit(plan, trial, tracker, cfg, seed, result, beats_best) -> None:
    run_id = result.run_id
    pl.seed_everything(seed, workers=True, verbose=False)
    datamodule, module = build_objects(cfg)
    pruning = OptunaPruning(trial, plan.metrics[0]) if plan.reports_epochs else None
    trainer = build_trainer(
        cfg.trainer, callbacks=[pruning] if pruning else [],
        logger=tracker.trial_logger(run_id),
        root_dir=str(plan.run_dir / "trials" / plan.study_name / str(trial.number)))
    trainer.fit(module, datamodule=datamodule)
    if pruning is not None and pruning.pruned:
        result.state, result.pruned_at = TrialState.PRUNED, pruning.pruned_at
        return
    values = []
    for metric in plan.metrics:
        value = trainer.callback_metrics.get(metric)
        if value is None:
            raise RuntimeError(f"metric '{metric}' was not logged in validation")
        values.append(float(value))
    bad = [m for m, v in zip(plan.metrics, values, strict=True) if not math.isfinite(v)]
    if bad:
        # Without epoch reports (multi-objective) a diverged trial reaches this point;
        # NaN or inf cannot be ranked, so it fails (README: "what happens when things fail").
        raise FloatingPointError(f"objective {bad[0]} is {values[plan.metrics.index(bad[0])]}")
    result.state, result.values = TrialState.COMPLETE, values
    if plan.cfg.tracking.log_models and beats_best(values[0]):
        try:
            uri = log_trial_model(module, example_input(module, datamodule), run_id)
        except Exception as error:
            # The trial itself succeeded; only its model cannot be exported (e.g. code
            # torch.export cannot trace). Keep the result, say why there is no model.
            trial.set_user_attr(tags.MODEL_ERROR_ATTR, reason_of(error))
            tracker.log_error(run_id, traceback.format_exc())
        else:
            trial.set_user_attr(tags.MODEL_URI_ATTR, uri)

"""A trial's life, from the moment a slot has claimed it until nothing of it is RUNNING.

    train_claimed        keep the trial's lease while it runs; record how it ended; on
                         Ctrl-C or SIGTERM, record the interruption instead
    run_trial            ask for a new trial's MLflow run (the driver makes it
                         meanwhile) -> sample -> config -> its run (that one, or the
                         run a repeat resumes) -> fit, in this process or across DDP
                         ranks -> its weights kept, if it beats the best (exported
                         once, at the sweep's end: tuner.trial.model)
    record               tell Optuna how it ended, then end its MLflow run to match
    record_interruption  leave nothing RUNNING, wherever the interruption landed
                         (the last two in tuner.trial.recording: the driver uses them
                         too, for a slot that died mid-trial, without importing torch)

The trial's own seed is ``seed + trial.number``: two trials with the same params still
differ by seed (as repeated runs would), and a trial is reproducible from its number. A
repeat of a failed trial keeps its first attempt's seed (tuner.study.retries); a repeat
of a trial cut short from outside resumes from its chain's last checkpoint and
continues its MLflow run (tuner.trial.resume).

Failures are results, not exceptions: anything a trial raises (a bad sample, a shape
error, a NaN objective, CUDA out of memory) comes back as a FAIL result with the
reason, so that the sweep goes on. ``KeyboardInterrupt``, ``SystemExit`` and
``SweepInterrupted`` are not caught by :func:`run_trial`; :func:`train_claimed` records
them as interruptions and re-raises.
"""

from __future__ import annotations

import contextlib
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

import optuna
from omegaconf import DictConfig
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from tuner.config.plan import SweepPlan, to_yaml
from tuner.core import attrs
from tuner.core.errors import SweepInterrupted
from tuner.core.masking import mask
from tuner.core.results import TrialResult, is_better, reason_of
from tuner.study.leases import LeaseKeeper
from tuner.study.retries import root_of
from tuner.study.trials import best_trial
from tuner.study.user_attrs import set_trial_user_attrs
from tuner.trial import resume
from tuner.trial.checkpoints import ResumeCheckpoint, checkpoint_epochs
from tuner.trial.fit import FitInputs, FitOutcome, fit
from tuner.trial.metrics_logger import BatchLogger
from tuner.trial.model import keep_weights
from tuner.trial.recording import record, record_interruption
from tuner.trial.records import TrialRecords

# Trains a trial on several processes (tuner.launch.ddp.fit_in_ranks); the slot passes
# it in, so that this layer never reaches up into the one that launches processes.
RankFitter = Callable[[SweepPlan, optuna.Trial, TrialRecords, str, resume.ResumePoint | None],
                      FitOutcome]


def train_claimed(plan: SweepPlan, study: optuna.Study, storage: BaseStorage,
                  trial: optuna.Trial, tracker: TrialRecords, fit_in_ranks: RankFitter,
                  on_orphaned: Callable[[], None]) -> TrialResult:
    """Train a trial this process has claimed from ``study`` (opened on ``storage``), and
    record it. ``on_orphaned`` runs if the process that started this one (the sweep's
    driver) dies meanwhile."""
    best = best_trial(study)
    try:
        with LeaseKeeper(storage, trial._trial_id, on_orphaned=on_orphaned):
            result = run_trial(plan, trial, tracker, best, fit_in_ranks)
            record(study, trial, tracker, result)
        # It ended on its own: nothing to resume. Deleted only once Optuna knows, so
        # that a kill just before still leaves a checkpoint to resume from.
        resume.discard(plan, trial)
        return result
    except BaseException as error:  # Ctrl-C, SIGTERM, or Lightning's exit on Ctrl-C
        # A second signal must not cut the recording short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        record_interruption(study, trial, tracker, f"interrupted ({type(error).__name__})")
        raise


@dataclass(frozen=True)
class _Prepared:
    """A trial ready to fit: its config, seed and MLflow run."""

    cfg: DictConfig
    config_yaml: str  # masked: what the run's config.yaml and the trial's attribute hold
    seed: int
    run_id: str
    point: resume.ResumePoint | None  # where a repeat resumes; None: from epoch 0


def run_trial(plan: SweepPlan, trial: optuna.Trial, tracker: TrialRecords,
              best: FrozenTrial | None, fit_in_ranks: RankFitter) -> TrialResult:
    """Train one trial; its MLflow run is created here and left for the caller to end.
    ``best``: the study's best trial when this one started (its weights are kept if it
    beats that)."""
    start = time.monotonic()
    runs: list[str] = []  # the trial's run, once it has one (also if preparing fails)
    try:
        prepared = _prepare(plan, trial, tracker, runs)
        if plan.ranks_per_trial > 1:
            outcome = fit_in_ranks(plan, trial, tracker, prepared.run_id, prepared.point)
        else:
            outcome = _fit_here(plan, trial, tracker, prepared, best)
    except Exception as error:
        if SweepInterrupted.raised:  # an interruption that a library turned into an error
            raise SweepInterrupted("interrupted") from error
        run_id = runs[0] if runs else None
        if run_id is not None:
            tracker.log_error(run_id, traceback.format_exc())
        return TrialResult(trial.number, TrialState.FAIL, reason=reason_of(error),
                           run_id=run_id, seconds=time.monotonic() - start)
    return TrialResult(trial.number, outcome.state, outcome.values, pruned_at=outcome.pruned_at,
                       run_id=prepared.run_id, seconds=time.monotonic() - start)


def _prepare(plan: SweepPlan, trial: optuna.Trial, tracker: TrialRecords, runs: list[str]
             ) -> _Prepared:
    """Sample the trial, build its config and give it its run; ``runs`` gets the run's id
    as soon as there is one."""
    first = root_of(trial)
    # A new trial's run is asked for first: the driver creates it while the params are
    # sampled and the config is built. A repeat may continue its chain's run instead.
    new_run = tracker.request_trial_run(trial.number) if first == trial.number else None
    own: dict[str, object] = {}  # the trial's own attributes, once they are known
    try:
        params = plan.space.sample(trial)
        cfg = plan.trial_config(params)
        config_yaml = mask(to_yaml(cfg))
        seed = plan.cfg.seed + first
        own = {attrs.SEED_ATTR: seed, attrs.CONFIG_ATTR: config_yaml}
        point = None if new_run is not None else _resume_point(plan, trial, tracker)
        if point is not None:  # a repeat of a trial cut short: continue its run
            runs.append(point.run_id)
            set_trial_user_attrs(trial, own)
            return _Prepared(cfg, config_yaml, seed, point.run_id, point)
        resume.discard(plan, trial)  # a fresh start: an older checkpoint is not its run's
        inputs = {**params, "seed": seed}
        if new_run is not None:
            claim, new_run = new_run, None  # read once, whatever it answers
            runs.append(claim())
            tracker.log_trial_inputs(runs[0], inputs, config_yaml)
        else:
            runs.append(tracker.start_trial(trial.number, inputs, config_yaml,
                                            retry_of=first))
    except BaseException:  # a failure, or Ctrl-C / SIGTERM
        # The trial shows what it got (its config; its run, which is then ended with
        # it). A run asked for and not yet read exists: it is read now, so that it is
        # ended too and its answer is not left on the pipe.
        if new_run is not None:  # asked for and not read yet
            with contextlib.suppress(Exception):
                runs.append(new_run())
        linked = {attrs.RUN_ID_ATTR: runs[0]} if runs else {}
        with contextlib.suppress(Exception):
            set_trial_user_attrs(trial, {**own, **linked})
        raise
    # One write for the three (tuner.study.user_attrs); a resume's run id is recorded by
    # resume.record_resume.
    set_trial_user_attrs(trial, {**own, attrs.RUN_ID_ATTR: runs[0]})
    return _Prepared(cfg, config_yaml, seed, runs[0], None)


def _resume_point(plan: SweepPlan, trial: optuna.Trial,
                  tracker: TrialRecords) -> resume.ResumePoint | None:
    """Where this trial resumes, with the resume recorded and its run taken over; None
    to start at epoch 0, with the reason on the trial when a checkpoint was there but
    cannot be used."""
    point = resume.find(plan, trial)
    if point is None:
        return None
    try:
        point = replace(point, epochs=checkpoint_epochs(point.checkpoint))
    except Exception as error:
        why = reason_of(error)
    else:
        why = tracker.why_not_resume(point.run_id, point.attempts)
    if why is not None:
        trial.set_user_attr(attrs.RESUME_ERROR_ATTR, why)
        return None
    # The trial points at the run before the run is RUNNING again: a kill in between
    # leaves a run that whoever reaps this trial finds and ends.
    resume.record_resume(trial, tracker, point)
    tracker.resume_trial(point.run_id, trial.number, root_of(trial))
    return point


def _fit_here(plan: SweepPlan, trial: optuna.Trial, tracker: TrialRecords, prepared: _Prepared,
              best: FrozenTrial | None) -> FitOutcome:
    """Fit the trial in this process; keep its weights when it beats ``best``."""
    checkpoint = None
    if resume.supported(plan):
        checkpoint = ResumeCheckpoint(resume.checkpoint_path(plan, trial),
                                      plan.cfg.resume_checkpoint_s)
    point = prepared.point
    fitted = fit(FitInputs(
        prepared.cfg, prepared.seed, plan.metrics, plan.reports_epochs,
        plan.trial_dir(trial.number), trial=trial,
        logger=trial_logger(tracker, prepared.run_id, plan.cfg.tracking.flush_interval,
                            resumed=point is not None),
        checkpoint=checkpoint, resume_from=None if point is None else point.checkpoint))
    outcome = fitted.outcome
    if (outcome.state == TrialState.COMPLETE and plan.cfg.tracking.log_models
            and (best is None or is_better(outcome.values[0], best.values[0],
                                           plan.directions[0]))):
        keep_weights(fitted, trial._trial_id, trial.study._storage,
                     plan.trial_dir(trial.number), tracker, prepared.run_id, beaten=best)
    return outcome


def trial_logger(tracker: TrialRecords, run_id: str, flush_interval: float,
                 resumed: bool = False) -> BatchLogger:
    """The Lightning logger of a trial's run; ``resumed``: the run already holds metrics
    of an attempt cut short, and the logger writes no step twice."""
    return BatchLogger(partial(tracker.log_metrics, run_id), flush_interval,
                       tracker.logged_steps(run_id) if resumed else None)

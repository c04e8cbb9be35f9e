"""A trial's life in its slot: the order in, Lightning's fit, the result out.

    train       the order's config -> fit, here or across DDP ranks -> the weights kept
                if it beats the best -> the result (COMPLETE, PRUNED, or FAIL with why)

The slot tells Optuna only each epoch's value, and asks the pruner against the storage,
as Optuna's own Lightning integration does (tuner.trial.pruning). It writes nothing to
MLflow: its metric batches go one way to its driver (``send_metrics``), which tells
Optuna how the trial ended and ends the run to match (tuner.launch.driver).

Failures are results, not exceptions: anything a trial raises (a shape error, a NaN
objective, CUDA out of memory) comes back as a FAIL result with the reason and the
traceback, so that the sweep goes on. ``KeyboardInterrupt``, ``SystemExit`` and
``SweepInterrupted`` pass through: the slot's driver records the interruption.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

from tuner.config.plan import SweepPlan
from tuner.core import attrs
from tuner.core.errors import SweepInterrupted
from tuner.core.results import MetricRow, TrialResult, reason_of
from tuner.trial.checkpoints import ResumeCheckpoint
from tuner.trial.fit import FitInputs, fit
from tuner.trial.metrics_logger import BatchLogger
from tuner.trial.model import keep_weights
from tuner.trial.order import Order
from tuner.trial.segment import SegmentEnd, segment_inputs

# Where a trial's metric batches go: (trial number, rows). One way: nothing answers.
MetricSink = Callable[[int, list[MetricRow]], None]
# Trains an order on several processes (tuner.launch.ddp.fit_in_ranks); the slot passes
# it in, so that this layer never reaches up into the one that launches processes.
RankFitter = Callable[[SweepPlan, Order, MetricSink], TrialResult]


def train(plan: SweepPlan, order: Order, study: optuna.Study, send_metrics: MetricSink,
          fit_in_ranks: RankFitter) -> TrialResult:
    """Train ``order`` (a trial of ``study``, which this process opened with the
    study's pruner) and say how it ended."""
    start = time.monotonic()
    try:
        if plan.ranks_per_trial > 1:
            result = fit_in_ranks(plan, order, send_metrics)
        else:
            result = _fit_here(plan, order, study, send_metrics)
    except Exception as error:
        if SweepInterrupted.raised:  # an interruption that a library turned into an error
            raise SweepInterrupted("interrupted") from error
        result = TrialResult(order.number, TrialState.FAIL, reason=reason_of(error),
                             run_id=order.run_id, error_text=traceback.format_exc())
    result.seconds = time.monotonic() - start
    return result


def _fit_here(plan: SweepPlan, order: Order, study: optuna.Study, send_metrics: MetricSink
              ) -> TrialResult:
    trial = optuna.trial.Trial(study, order.trial_id)
    logger = trial_logger(plan, order, send_metrics)
    checkpoint, resume_from, more = _state_inputs(plan, order)
    try:
        fitted = fit(FitInputs(
            order.cfg, order.seed, plan.metrics, plan.reports_epochs, order.trial_dir,
            trial=trial, logger=logger, checkpoint=checkpoint, resume_from=resume_from,
            callbacks=more, measures=plan.compression is not None))
    finally:
        logger.flush()  # what it logged before an error or an interruption reaches the run
    outcome = fitted.outcome
    result = TrialResult(order.number, outcome.state, outcome.values,
                         pruned_at=outcome.pruned_at, reason=outcome.reason,
                         run_id=order.run_id, params=logger.hyperparams)
    if isinstance(checkpoint, SegmentEnd) and checkpoint.sha256 is not None:
        result.attrs[attrs.PBT_END_SHA_ATTR] = checkpoint.sha256  # its children check it
        result.attrs[attrs.PBT_THREADS_ATTR] = torch.get_num_threads()  # tuner replay's
    result.attrs.update(fitted.measured_attrs())
    if not plan.reports_epochs:  # Optuna holds no epoch of it: the leaderboard reads this
        result.attrs[attrs.EPOCHS_ATTR] = fitted.trainer.current_epoch
    if (outcome.state == TrialState.COMPLETE
            and order.beats_best(outcome.values[0], plan.directions[0])):
        kept, result.error_text = keep_weights(fitted, order.trial_dir)
        result.attrs.update(kept)
    return result


def _state_inputs(plan: SweepPlan, order: Order
                  ) -> tuple[ResumeCheckpoint | None, Path | None, tuple]:
    """Where the fit saves its state, what it resumes from, and the callbacks that go
    with them: a repeat's resume checkpoint, or a PBT segment's (tuner.trial.segment)."""
    if order.segment is not None:
        return segment_inputs(order.segment)
    checkpoint = (None if order.checkpoint_dir is None else
                  ResumeCheckpoint(order.checkpoint_dir, plan.cfg.resume_checkpoint_s))
    return checkpoint, None if order.resume is None else order.resume.checkpoint, ()


def trial_logger(plan: SweepPlan, order: Order, send_metrics: MetricSink) -> BatchLogger:
    """The Lightning logger of the order's run; a resumed run already holds metrics of
    the attempt cut short, and the logger writes no step twice."""
    return BatchLogger(partial(send_metrics, order.number), plan.cfg.tracking.flush_interval,
                       None if order.resume is None else order.resume.logged_steps,
                       run_id=order.run_id, tracking_uri=plan.cfg.tracking.tracking_uri)

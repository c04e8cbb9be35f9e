"""A claimed trial made ready for a slot: sampled, configured, given its run, ordered.

    ahead      a trial claimed while its slot's current one trains gets its run now
               (:func:`claim_ahead`): that needs no result of the trials still training
    sample     the search space samples the trial (a repeat's params are fixed)
    config     the trial's config: sampled values set, resolved; its seed
    run        its MLflow run, created in the run writer's thread while it samples (or
               the run of the attempt a repeat resumes, taken over: tuner.launch.trial_runs)
    order      everything the slot needs to train it (tuner.trial.order)

A trial that cannot be made ready (a sample the space refuses, a run MLflow refuses) is
:class:`Ready` with the FAIL result it ends with instead of an order, its run (if it got
one) named, so that the driver ends both.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import suppress
from dataclasses import dataclass, field

import optuna
from optuna.trial import TrialState

from tuner.config.plan import SweepPlan, to_yaml
from tuner.core import attrs
from tuner.core.masking import mask
from tuner.core.results import TrialResult, reason_of
from tuner.core.upstream import trial_id_of
from tuner.launch.lineage import lineage_tags, log_lineage, schedule_rows
from tuner.launch.run_writer import RunWriter
from tuner.launch.trial_runs import new_run_of, take_over_run
from tuner.study.retries import root_of
from tuner.study.trial_attrs import set_trial_attrs
from tuner.study.trials import best_trial
from tuner.tracking.tags import SEED_PARAM
from tuner.trial import resume
from tuner.trial.order import Order, SegmentOrder


@dataclass
class Ready:
    """A claimed trial on its way to a slot."""

    trial: optuna.Trial
    runs: list[str] = field(default_factory=list)  # its run's id, once it has one
    order: Order | None = None
    failed: TrialResult | None = None  # how it ended when it could not be made ready
    new_run: Future[str] | None = None  # its run, being made (claimed ahead, not sampled)

    @property
    def run_id(self) -> str | None:
        return self.runs[0] if self.runs else None

    @property
    def sampled(self) -> bool:
        return self.order is not None or self.failed is not None

    def settle_run(self) -> None:
        """Its run's id, once the run on its way exists (a trial released unsampled)."""
        if self.new_run is not None and not self.runs:
            with suppress(Exception):  # not made: nothing to end
                self.runs.append(self.new_run.result())


def claim_ahead(study: optuna.Study, writer: RunWriter, trial: optuna.Trial) -> Ready:
    """A trial claimed while its slot's current one trains: its run is made now, and it
    is sampled only when the slot frees (:func:`make_ready`), so that the sampler sees
    every trial that ended meanwhile: sampled ahead, TPE saw one trial fewer and found
    slightly worse bests in the same time (docs/benchmarks.md, 2026-12-07)."""
    ready = Ready(trial)
    if root_of(trial) == trial.number:  # a repeat may take over its chain's run instead
        ready.new_run = writer.first(new_run_of, study, writer.tracker, trial, None)
    return ready


SegmentOf = Callable[[optuna.Trial], SegmentOrder | None]  # tuner.launch.strategy


def make_ready(plan: SweepPlan, study: optuna.Study, writer: RunWriter, ready: Ready,
               segment_of: SegmentOf | None = None) -> Ready:
    """The trial sampled, configured, given its run and ordered; or the FAIL result it
    ends with. Ctrl-C and SIGTERM pass through (the run, if made, named on the trial).
    ``segment_of``: the part of training the strategy gives the trial (PBT's segment)."""
    trial = ready.trial
    try:
        ready.order = order(plan, study, writer, trial, ready.runs, ready.new_run,
                            segment_of)
    except Exception as error:
        ready.failed = TrialResult(trial.number, TrialState.FAIL, reason=reason_of(error),
                                   run_id=ready.run_id, error_text=traceback.format_exc())
    ready.new_run = None
    return ready


def order(plan: SweepPlan, study: optuna.Study, writer: RunWriter, trial: optuna.Trial,
          runs: list[str], new_run: Future[str] | None = None,
          segment_of: SegmentOf | None = None) -> Order:
    """Sample the trial, build its config and give it its run (``runs`` gets the run's
    id as soon as there is one; ``new_run``: the run already on its way); the order for
    its slot. A PBT segment resumes no attempt's run: it starts from its parent's
    checkpoint, in a run of its own, tagged with its place in the population."""
    tracker, first = writer.tracker, root_of(trial)
    # A new trial's run is created while it samples; a repeat may take over its chain's.
    if new_run is None and first == trial.number:
        new_run = writer.first(new_run_of, study, tracker, trial, None)
    try:
        params = plan.space.sample(trial)
        cfg = plan.trial_config(params)
        config_yaml = mask(to_yaml(cfg))
        seed = plan.cfg.seed + first
        # The trial shows what it trains with, in one write (tuner.study.user_attrs).
        set_trial_attrs(trial, {attrs.SEED_ATTR: seed, attrs.CONFIG_ATTR: config_yaml})
        segment = segment_of(trial) if segment_of is not None else None
        resume_from = (None if new_run is not None or segment is not None
                       else take_over_run(plan, trial, writer, runs))
        if resume_from is None:
            resume.discard(plan, trial)  # an older checkpoint is not its run's
            run = new_run or writer.first(new_run_of, study, tracker, trial, first)
            new_run = None
            runs.append(run.result())
            writer.later(tracker.log_trial_inputs, runs[0], {**params, SEED_PARAM: seed},
                         config_yaml, trial=trial.number)
            if segment is not None:
                writer.later(log_lineage, tracker, runs[0], lineage_tags(study, trial),
                             schedule_rows(plan, params, segment), trial=trial.number)
    except BaseException:
        if new_run is not None:  # it exists, linked to the trial: it ends with it
            with suppress(Exception):
                runs.append(new_run.result())
        raise
    best = best_trial(study)
    return Order(
        trial_id_of(trial), trial.number, cfg, seed, runs[0], plan.trial_dir(trial.number),
        checkpoint_dir=(resume.chain_dir(plan, trial)
                        if resume.supported(plan) and segment is None else None),
        resume=resume_from, best_value=None if best is None else best.values[0],
        keeps_weights=bool(plan.cfg.tracking.log_models),
        experiment_id=tracker.experiment_id, parent_run_id=tracker.parent_run_id,
        segment=segment)

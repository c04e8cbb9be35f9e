"""What the next free slot trains: the driver asks its strategy, and tells it each end.

A strategy is where a sweep decides. It answers :meth:`Strategy.next_trial` with a
claimed trial (asked from the study, its lease taken for the slot that will train it),
a reason to stop, or "wait"; the driver then samples the trial, gives it a run and
hands it to the slot (tuner.launch.driver), and tells the strategy how it ended
(:meth:`Strategy.finished`). One driver per machine asks it, from one thread per slot,
one claim at a time, under the study's claim lock, so a strategy that forks a trial
from another's checkpoint (population-based training) never does it twice.

:class:`Search` is the default: the config's sampler proposes (a repeat of a failed
trial first, when one is due: tuner.study.retries), and its pruner stops trials from
inside their slots. ``strategy=pbt`` is population-based training
(tuner.launch.population): one trial per member and segment of epochs.
"""

from __future__ import annotations

import math
from typing import Protocol

import optuna

from tuner.config.plan import SweepPlan
from tuner.config.samplers import GRID_SAMPLER, target_of
from tuner.core.results import TrialResult
from tuner.launch.claims import Claims
from tuner.launch.population import PopulationStrategy
from tuner.study.budget import Claim, Reaper, claim
from tuner.trial.order import SegmentOrder


class Strategy(Protocol):
    def next_trial(self, owner_pid: int) -> Claim:
        """A trial for the slot process ``owner_pid`` to train, a reason to stop, or
        neither (wait: the budget is taken, but a running trial may still fail)."""
        ...

    def segment(self, trial: optuna.Trial) -> SegmentOrder | None:
        """What part of training a claimed trial does (population-based training: a
        segment of epochs from a parent's checkpoint); None: the config's whole fit."""
        ...

    def finished(self, result: TrialResult) -> None:
        """A trial this strategy handed out has ended, and Optuna knows how."""
        ...


def strategy_for(plan: SweepPlan, study: optuna.Study, reap: Reaper) -> Strategy:
    """The config's strategy: ``search``, or ``pbt`` (tuner.launch.population)."""
    if plan.population is not None:
        return PopulationStrategy(plan, study, reap)
    return Search(plan, study, reap)


class Search(Claims):
    """Sampler and pruner from the config; ``n_trials`` COMPLETE + PRUNED in all."""

    def __init__(self, plan: SweepPlan, study: optuna.Study, reap: Reaper):
        super().__init__(plan, study, reap)
        self.grid_points = (math.prod(len(values) for values in plan.space.grid().values())
                            if target_of(plan.cfg.sampler) == GRID_SAMPLER else None)

    def _claim(self, owner_pid: int) -> Claim:
        return claim(self.study, self.storage, self.plan.cfg.n_trials, self.lock, self.reap,
                     owner_pid, self.plan.cfg.retry_failed, self.grid_points)

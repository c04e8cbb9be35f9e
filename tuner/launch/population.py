"""``strategy=pbt``: the driver's side of population-based training.

Each claim, under the study's claim lock: dead owners' segments reaped, then the
population's next need decided from the study (tuner.study.population): a queued
segment is taken; else a repeat of a segment cut short, the next generation (each
member's parent and values decided and enqueued at once), or a generation-0 member
sampled by the study's sampler; else wait, or stop when the last generation has ended.

When a segment is readied for its slot, its parent's checkpoint is copied into its own
folder (a hard link where it can be) and checked against the hash its parent recorded
(:meth:`PopulationStrategy.segment`): the slot resumes from a file no one else writes or
deletes. A parent's checkpoint is deleted once no segment can need it: when the
generation after its children is decided, every child has ended. The best segment's
stays; at the end, only it.
"""

from __future__ import annotations

import os
import shutil
from contextlib import suppress
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.config.plan import SweepPlan
from tuner.core import attrs
from tuner.core.upstream import trial_id_of
from tuner.launch.claims import Claims
from tuner.study import leases
from tuner.study.budget import Claim, Reaper, reap_stale
from tuner.study.population import decide, place
from tuner.study.trial_attrs import set_trial_attrs
from tuner.study.trials import best_trial
from tuner.trial.order import SegmentOrder
from tuner.trial.resume import sha256_of

END_CHECKPOINT = "segment.ckpt"  # a segment's state at its end, which its children copy
START_CHECKPOINT = "start.ckpt"  # the copy of its parent's, which it resumes from


class PopulationStrategy(Claims):
    """The PBT strategy (tuner.launch.strategy.Strategy)."""

    def __init__(self, plan: SweepPlan, study: optuna.Study, reap: Reaper):
        assert plan.population is not None
        super().__init__(plan, study, reap)
        self.population = plan.population
        self.distributions = {p.path: p.distribution for p in plan.space.params}

    def _claim(self, owner_pid: int) -> Claim:
        with self.lock():
            trials, _ = reap_stale(self.study, self.storage, self.reap)
            fresh = None
            if not any(t.state == TrialState.WAITING for t in trials):
                decision = decide(trials, self.population, self.distributions,
                                  self.plan.directions[0] == "maximize", self.plan.cfg.seed,
                                  lambda number: str(self.end_checkpoint(number)))
                self._drop(decision.done_with, trials)
                if decision.stop is not None:
                    return Claim(stop=decision.stop)
                for segment in decision.enqueue:
                    self.study.enqueue_trial(segment.params, user_attrs=segment.user_attrs)
                fresh = decision.fresh_member
                if not decision.enqueue and fresh is None:
                    return Claim()  # wait: a generation is still training
            trial = self.study.ask()  # the oldest queued segment, or a fresh member's
            if fresh is not None:
                set_trial_attrs(trial, place(fresh, 0, self.population))
            leases.take(self.storage, trial_id_of(trial), owner_pid)
            return Claim(trial=trial)

    # -- checkpoints ---------------------------------------------------------------------

    def end_checkpoint(self, number: int) -> Path:
        return self.plan.trial_dir(number) / END_CHECKPOINT

    def segment(self, trial: optuna.Trial) -> SegmentOrder | None:
        """The segment ``trial`` trains, its parent's checkpoint copied into its folder
        and checked (raises when the copy does not hash to what the parent recorded)."""
        user = trial.user_attrs
        if attrs.PBT_EPOCHS_ATTR not in user:
            return None
        start, end = (int(e) for e in user[attrs.PBT_EPOCHS_ATTR])
        folder = self.plan.trial_dir(trial.number)
        copy = None
        if attrs.PBT_CHECKPOINT_ATTR in user:
            copy = folder / START_CHECKPOINT
            folder.mkdir(parents=True, exist_ok=True)
            source = Path(user[attrs.PBT_CHECKPOINT_ATTR])
            if not source.is_file():
                raise FileNotFoundError(f"the checkpoint of trial {user[attrs.PBT_PARENT_ATTR]}"
                                        f" ({source}) is gone; its member re-forks next "
                                        "generation")
            _link_or_copy(source, copy)
            if sha256_of(copy) != user[attrs.PBT_CHECKPOINT_SHA_ATTR]:
                copy.unlink()
                raise ValueError(f"{source} does not match the hash trial "
                                 f"{user[attrs.PBT_PARENT_ATTR]} recorded: it changed")
        return SegmentOrder(start, end, folder / END_CHECKPOINT, copy)

    def _drop(self, numbers: list[int], trials: list[FrozenTrial]) -> None:
        """Delete the checkpoints of segments no one can need any more, but the best
        segment's end (the state a person may want to train on from)."""
        best = best_trial(self.study, trials) if numbers else None
        for number in numbers:
            folder = self.plan.trial_dir(number)
            with suppress(FileNotFoundError):
                (folder / START_CHECKPOINT).unlink()
            if best is None or number != best.number:
                with suppress(FileNotFoundError):
                    (folder / END_CHECKPOINT).unlink()


def _link_or_copy(source: Path, copy: Path) -> None:
    """``copy`` holds ``source``'s bytes for good: a hard link where the file system
    allows (instant; a committed checkpoint is never written again, and the parent's
    name going away leaves the link whole), else a copy."""
    copy.unlink(missing_ok=True)  # a repeat's leftover
    try:
        os.link(source, copy)
    except OSError:
        shutil.copyfile(source, copy)

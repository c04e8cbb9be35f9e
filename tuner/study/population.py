"""Population-based training's decisions, read from the study alone.

A population of ``size`` members trains in generations of ``interval`` epochs; each
member's segment of a generation is one Optuna trial (its params cannot change once
sampled, and a segment's value is comparable with its generation's). A segment's trial
carries its place (``pbt.*`` attributes, tuner.core.attrs): member, generation, epochs,
and for generation 1 on, the parent segment whose checkpoint it continues, the
checkpoint's path and hash, and how its values came from the parent's (keep, perturb,
resample).

Every decision is a function of the study's trials, seeded by (seed, generation,
member), and made under the study's claim lock (tuner.launch.population), so that

- a sweep killed at any point decides again exactly what it had decided (a generation
  half enqueued is completed, not redone), and nothing recorded is trained twice;
- two machines never fork one member twice;
- a round never hangs on a dead member: a segment cut short (Ctrl-C, a kill, a lost
  lease) is repeated from the same parent checkpoint; a segment that failed on its own
  is not scored, and its member copies a top member at the next generation.

A generation is decided once each member's segment of the one before has ended
(COMPLETE, or a failure of its own): the members of a generation are compared with each
other, at the same epoch. Within it, the bottom ``quantile`` (and any member whose
segment failed) copies a member drawn from the top ``quantile`` and explores its values
(tuner.study.explore); the others keep theirs and continue their own checkpoint.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from tuner.config.population import Population
from tuner.core import attrs
from tuner.core.upstream import enqueued_params
from tuner.study.explore import explore
from tuner.study.retries import attempt_of, cut_short, root_of

KEEP = "keep"


@dataclass(frozen=True)
class Segment:
    """A segment to add to the study: its fixed params and its ``pbt.*`` attributes
    (empty params: generation 0, sampled by the study's sampler)."""

    params: dict[str, Any]
    user_attrs: dict[str, Any]


@dataclass
class Decision:
    """What the population needs now: segments to enqueue, a generation-0 member to
    sample, a reason to stop, or nothing (wait for running segments)."""

    enqueue: list[Segment] = field(default_factory=list)
    fresh_member: int | None = None
    stop: str | None = None
    # Trials whose checkpoints no queued or running segment can need any more.
    done_with: list[int] = field(default_factory=list)


def place(member: int, generation: int, population: Population) -> dict[str, Any]:
    return {attrs.PBT_MEMBER_ATTR: member, attrs.PBT_GENERATION_ATTR: generation,
            attrs.PBT_EPOCHS_ATTR: list(population.epochs(generation))}


def member_of(trial: FrozenTrial) -> tuple[int, int] | None:
    """(member, generation) of a segment's trial; None for a trial outside the population."""
    member = trial.user_attrs.get(attrs.PBT_MEMBER_ATTR)
    generation = trial.user_attrs.get(attrs.PBT_GENERATION_ATTR)
    return None if member is None or generation is None else (int(member), int(generation))


def decide(trials: Sequence[FrozenTrial], population: Population,
           distributions: Mapping[str, BaseDistribution], maximize: bool, seed: int,
           checkpoint_of: Callable[[int], str]) -> Decision:
    """What the population needs next (see the module docstring). ``checkpoint_of``: the
    path of a trial's end-of-segment checkpoint."""
    attempts: dict[tuple[int, int], list[FrozenTrial]] = defaultdict(list)
    for trial in trials:
        where = member_of(trial)
        if where is not None:
            attempts[where].append(trial)
    latest = {where: max(tried, key=lambda t: (attempt_of(t), t.number))
              for where, tried in attempts.items()}
    repeats = [_repeat(trial) for trial in latest.values()
               if trial.state == TrialState.FAIL and cut_short(trial)]
    if repeats:
        return Decision(enqueue=repeats)
    started = {member for member, generation in latest if generation == 0}
    missing = [m for m in range(population.size) if m not in started]
    if missing:
        return Decision(fresh_member=missing[0])
    generation = max(generation for _, generation in latest)
    if generation > 0:
        gaps = [m for m in range(population.size) if (m, generation) not in latest]
        if gaps:  # a generation half enqueued when its decider died: complete it
            return _next_generation(latest, generation - 1, gaps, population, distributions,
                                    maximize, seed, checkpoint_of)
    if not _settled(latest, generation, population.size):
        return Decision()
    if generation == population.generations - 1:
        return Decision(stop="budget", done_with=[t.number for t in trials
                                                  if member_of(t) is not None])
    return _next_generation(latest, generation, range(population.size), population,
                            distributions, maximize, seed, checkpoint_of)


def _next_generation(latest: dict[tuple[int, int], FrozenTrial], generation: int,
                     members: Sequence[int] | range, population: Population,
                     distributions: Mapping[str, BaseDistribution], maximize: bool,
                     seed: int, checkpoint_of: Callable[[int], str]) -> Decision:
    """The segments of ``members`` in the generation after ``generation``."""
    scored = sorted((t for (m, g), t in latest.items() if g == generation and _usable(t)),
                    key=lambda t: t.values[0], reverse=maximize)
    if not scored:
        return Decision(stop=f"every member's segment of generation {generation} failed")
    k = max(1, int(len(scored) * population.quantile)) if len(scored) > 1 else 0
    top, bottom = scored[:k], {t.number for t in scored[len(scored) - k:]} if k else set()
    child = generation + 1
    enqueue = []
    for member in members:
        own = latest.get((member, generation))
        rng = random.Random(f"{seed}:{child}:{member}")
        how: dict[str, str] = {}
        if own is not None and _usable(own) and own.number not in bottom:
            parent, params, op = own, dict(own.params), KEEP
        else:
            parent = rng.choice(top or scored[:1])
            params, op, how = explore(parent.params, distributions, population.mutable, rng,
                                      population.factors, population.resample)
        enqueue.append(Segment(params, {
            **place(member, child, population), attrs.PBT_PARENT_ATTR: parent.number,
            attrs.PBT_OP_ATTR: op, **({attrs.PBT_EXPLORED_ATTR: how} if how else {}),
            attrs.PBT_CHECKPOINT_ATTR: checkpoint_of(parent.number),
            attrs.PBT_CHECKPOINT_SHA_ATTR: parent.user_attrs[attrs.PBT_END_SHA_ATTR]}))
    # The generation before the parents' is done with: every parent segment has ended.
    done_with = [t.number for (m, g), t in latest.items() if g < generation]
    return Decision(enqueue=enqueue, done_with=done_with)


def _usable(trial: FrozenTrial) -> bool:
    """A segment that can be scored and copied: complete, its checkpoint saved."""
    return (trial.state == TrialState.COMPLETE and trial.values is not None
            and attrs.PBT_END_SHA_ATTR in trial.user_attrs)


def _settled(latest: dict[tuple[int, int], FrozenTrial], generation: int, size: int) -> bool:
    """Every member's segment of ``generation`` has ended: complete, or failed on its own."""
    return all((m, generation) in latest
               and latest[(m, generation)].state in (TrialState.COMPLETE, TrialState.FAIL)
               for m in range(size))


def _repeat(trial: FrozenTrial) -> Segment:
    """A segment cut short, to train again: same member, generation, parent checkpoint
    and values (those its decision fixed, when it was cut short before it sampled them
    all; none for a generation-0 member cut short so early: the sampler draws)."""
    kept = {k: v for k, v in trial.user_attrs.items() if k.startswith("pbt.")
            and k not in (attrs.PBT_END_SHA_ATTR, attrs.PBT_THREADS_ATTR)}
    # A segment killed while it sampled holds some of its values: the rest are its
    # decision's, which Optuna keeps until they are all sampled.
    params = {**enqueued_params(trial), **trial.params}
    return Segment(params, {**kept, attrs.RETRY_OF_ATTR: root_of(trial),
                            attrs.ATTEMPT_ATTR: attempt_of(trial) + 1})


def lineage(trials: Sequence[FrozenTrial], number: int) -> list[FrozenTrial]:
    """The segments that led to trial ``number``, generation 0 first (its own last)."""
    by_number = {t.number: t for t in trials}
    chain = [by_number[number]]
    while (parent := chain[-1].user_attrs.get(attrs.PBT_PARENT_ATTR)) is not None:
        chain.append(by_number[int(parent)])
    return chain[::-1]

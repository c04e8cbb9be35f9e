"""Running a FAIL trial again with the same params and seed.

A failed trial is replaced by a new one in any case (FAIL does not count toward
``n_trials``); this module decides whether the replacement repeats the failed trial
instead of sampling afresh:

- a trial that failed on its own (an exception, a NaN, a slot killed by a signal while
  it trained) is repeated at most ``retry_failed`` times;
- a trial that was cut short from outside, by Ctrl-C or SIGTERM ("interrupted") or by
  the death of its process found through its lease ("abandoned"), is always repeated:
  nothing was learnt about its params, and the command run again should finish the
  work the killed one had started.

A repeat is an Optuna trial of its own (a new number, its own MLflow run), enqueued with
the failed trial's params and two user attributes: ``retry_of`` (the number of the first
trial in the chain, which also fixes the seed) and ``attempt`` (1 for the first). It is
enqueued and asked under the claim lock (:mod:`tuner.study.budget`), so two claimants never
repeat the same failure.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from tuner.core import attrs

EXTERNAL_REASONS = ("interrupted", "abandoned")


@dataclass(frozen=True)
class Retry:
    params: dict[str, Any]
    user_attrs: dict[str, Any]


def root_of(trial: FrozenTrial) -> int:
    """The number of the first trial in ``trial``'s chain of repeats."""
    return int(trial.user_attrs.get(attrs.RETRY_OF_ATTR, trial.number))


def attempt_of(trial: FrozenTrial) -> int:
    return int(trial.user_attrs.get(attrs.ATTEMPT_ATTR, 1))


def cut_short(trial: FrozenTrial) -> bool:
    """True when the trial failed because of something outside it."""
    reason = str(trial.user_attrs.get(attrs.FAIL_REASON_ATTR, ""))
    return reason.startswith(EXTERNAL_REASONS)


def next_retry(trials: Sequence[FrozenTrial], retry_failed: int) -> Retry | None:
    """The oldest failure that is due a repeat, or None."""
    chains: dict[int, list[FrozenTrial]] = defaultdict(list)
    for trial in trials:
        chains[root_of(trial)].append(trial)
    for root in sorted(chains):
        latest = max(chains[root], key=attempt_of)
        if latest.state != TrialState.FAIL:
            continue  # still waiting or running, or the chain ended COMPLETE or PRUNED
        own_failures = sum(t.state == TrialState.FAIL and not cut_short(t)
                           for t in chains[root])
        if cut_short(latest) or own_failures <= retry_failed:
            return Retry(dict(latest.params), {attrs.RETRY_OF_ATTR: root,
                                               attrs.ATTEMPT_ATTR: attempt_of(latest) + 1})
    return None

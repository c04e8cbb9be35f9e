"""Starting a study from the best params of earlier ones (a scheduled job's rounds).

The best ``k`` COMPLETE trials of the earlier studies, best first, are enqueued into the
new study (Optuna's ``enqueue_trial``): its first trials re-train them on today's data,
then the sampler searches. Each enqueued trial says where its params came from
(``warm_start_from``: ``<study>#<number>``). Params the new search space cannot take (a
choice that was removed, a value outside narrowed bounds) are left out of the enqueued
trial, so Optuna samples them afresh.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.config.space import SearchSpace

WARM_START_ATTR = "warm_start_from"


def best_of(studies: Sequence[optuna.Study], k: int) -> list[tuple[str, FrozenTrial]]:
    """The ``k`` best COMPLETE trials over ``studies`` (by their first value, in the
    first study's direction), one per distinct set of params, best first."""
    if k <= 0 or not studies:
        return []
    maximize = studies[0].directions[0] == optuna.study.StudyDirection.MAXIMIZE
    found = [(study.study_name, trial) for study in studies
             for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    found.sort(key=lambda pair: pair[1].values[0], reverse=maximize)
    chosen: list[tuple[str, FrozenTrial]] = []
    seen: set[str] = set()
    for name, trial in found:
        key = repr(sorted(trial.params.items()))
        if key not in seen:
            seen.add(key)
            chosen.append((name, trial))
        if len(chosen) == k:
            break
    return chosen


def enqueue_best(study: optuna.Study, earlier: Sequence[optuna.Study], k: int,
                 space: SearchSpace) -> list[str]:
    """Enqueue the best ``k`` params of ``earlier`` into ``study``, keeping those that
    ``space`` (the new search space) can take. Returns where each came from."""
    params_of = {p.path: p for p in space.params}
    sources = []
    for name, trial in best_of(earlier, k):
        params: dict[str, Any] = {p: v for p, v in trial.params.items()
                                  if p in params_of and params_of[p].contains(v)}
        source = f"{name}#{trial.number}"
        study.enqueue_trial(params, user_attrs={WARM_START_ATTR: source},
                            skip_if_exists=True)
        sources.append(source)
    return sources

"""Studies side by side: what ``tuner compare`` prints, draws and logs.

Studies are comparable when they optimise the same metrics in the same directions
(yesterday's study and today's, the CNN and the MLP, two rounds of a scheduled job);
anything else is refused with the reason before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.app.pages.html import duration
from tuner.app.pages.study_page import trial_counts
from tuner.core.errors import ConfigError, Problem
from tuner.study.trials import best_trial, metric_names

GOOD_FRACTION = 0.25  # "good trials": the best quarter of a study's complete trials


@dataclass(frozen=True)
class Side:
    """One study of a comparison, with the figures the table shows."""

    study: optuna.Study
    best: FrozenTrial | None
    counts: dict[str, int]
    epochs: int  # epochs trained over all finished trials (reported steps)
    wall_seconds: float  # from the first trial's start to the last trial's end

    @property
    def name(self) -> str:
        return self.study.study_name


@dataclass(frozen=True)
class Comparison:
    metrics: tuple[str, ...]
    directions: tuple[str, ...]
    sides: tuple[Side, ...]

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sides]


def check_comparable(studies: list[optuna.Study]) -> None:
    """Raise ConfigError unless every study has the first one's metrics and directions."""
    first = studies[0]
    expected = (metric_names(first), _directions(first))
    for study in studies[1:]:
        found = (metric_names(study), _directions(study))
        if found != expected:
            raise ConfigError(Problem(
                "command line", "studies",
                f"'{study.study_name}' optimises {_describe(*found)} but "
                f"'{first.study_name}' optimises {_describe(*expected)}: their values "
                "cannot be set side by side",
                "compare studies of the same metrics and directions"))


def _directions(study: optuna.Study) -> tuple[str, ...]:
    return tuple(d.name.lower() for d in study.directions)


def _describe(metrics: tuple[str, ...], directions: tuple[str, ...]) -> str:
    return ", ".join(f"{m} ({d})" for m, d in zip(metrics, directions, strict=True))


def compare(studies: list[optuna.Study]) -> Comparison:
    check_comparable(studies)
    return Comparison(metric_names(studies[0]), _directions(studies[0]),
                      tuple(_side(s) for s in studies))


def _side(study: optuna.Study) -> Side:
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state.is_finished()]
    starts = [t.datetime_start for t in finished if t.datetime_start]
    ends = [t.datetime_complete for t in finished if t.datetime_complete]
    wall = (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0
    return Side(study, best_trial(study, trials), trial_counts(study),
                sum(len(t.intermediate_values) for t in finished), wall)


def differing_params(comparison: Comparison) -> dict[str, list[Any]]:
    """The parameters in which the studies' best trials differ: name -> value per study
    (None where a best trial has no such parameter, or there is no best trial)."""
    bests = [s.best.params if s.best else {} for s in comparison.sides]
    names = sorted({k for params in bests for k in params})
    return {k: [p.get(k) for p in bests] for k in names
            if len({repr(p.get(k)) for p in bests}) > 1}


def good_trials(side: Side, maximize: bool) -> list[FrozenTrial]:
    """The best GOOD_FRACTION of the study's complete trials by its first metric
    (at least one while any trial completed)."""
    complete = side.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ranked = sorted(complete, key=lambda t: t.values[0], reverse=maximize)
    return ranked[:max(1, round(len(ranked) * GOOD_FRACTION))] if ranked else []


def leaders(comparison: Comparison) -> list[Side]:
    """The studies whose best trial is best on the first metric: one, or several that
    tie (the same value is no win); none if no trial completed."""
    sides = [s for s in comparison.sides if s.best is not None]
    if not sides:
        return []
    sign = 1 if comparison.directions[0] == "maximize" else -1
    top = max(sign * s.best.values[0] for s in sides)
    return [s for s in sides if sign * s.best.values[0] == top]


def verdict(comparison: Comparison) -> str:
    """Who leads, in a line: "best: NAME (trial N, METRIC = V)", or the tie."""
    best, metric = leaders(comparison), comparison.metrics[0]
    if not best:
        return "no trial has completed in these studies yet"
    value = f"{metric} = {best[0].best.values[0]:.6g}"
    if len(best) == 1:
        return f"best: {best[0].name} (trial {best[0].best.number}, {value})"
    trials = ", ".join(f"{s.name} trial {s.best.number}" for s in best)
    return f"a tie: {' and '.join(s.name for s in best)} reach the same best, {value} ({trials})"


def table_rows(comparison: Comparison) -> list[tuple[str, list[str]]]:
    """(row label, one cell per study): the terminal table, and the page's."""
    rows: list[tuple[str, list[str]]] = []
    for i, metric in enumerate(comparison.metrics):
        # The best trial is best on the first metric; the others are that trial's values.
        label = f"best {metric}" if i == 0 else f"{metric} of the best trial"
        rows.append((f"{label} ({comparison.directions[i]})",
                     [f"{s.best.values[i]:.6g}" if s.best else "-" for s in comparison.sides]))
    rows.append(("best trial", [str(s.best.number) if s.best else "none completed"
                                for s in comparison.sides]))
    for state, label in (("COMPLETE", "complete"), ("PRUNED", "pruned"), ("FAIL", "failed")):
        rows.append((f"trials {label}", [str(s.counts[state]) for s in comparison.sides]))
    rows.append(("epochs trained", [str(s.epochs) for s in comparison.sides]))
    rows.append(("wall time", [duration(s.wall_seconds) for s in comparison.sides]))
    for name, values in differing_params(comparison).items():
        rows.append((f"best trial's {name}", [_value(v) for v in values]))
    return rows


def _value(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)

"""What a trial ended with, as a slot reports it to its driver.

Kept free of torch and Lightning imports: the driver unpickles these from its slot
processes and never imports either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from optuna.trial import TrialState

from tuner.core.errors import describe_error
from tuner.core.masking import mask

# A metric value as it travels from a slot to its run: (key, value, timestamp in ms,
# step). Plain values, so that they pickle cheaply.
MetricRow = tuple[str, float, int, int]
MAX_REASON = 500  # characters of a failure reason kept on the trial and its run


@dataclass
class TrialResult:
    """How a trial ended, and what its driver records for it (the slot writes neither
    Optuna's verdict nor MLflow: tuner.launch.driver does, from this)."""

    number: int
    state: TrialState
    values: list[float] | None = None
    reason: str | None = None  # why it failed
    pruned_at: int | None = None  # epoch at which it was pruned
    run_id: str | None = None
    seconds: float = 0.0
    killed: bool = False  # its process was killed from outside: the run ends KILLED
    error_text: str | None = None  # the traceback of a failure, for the run's error.txt
    attrs: dict[str, Any] = field(default_factory=dict)  # trial user attributes to set
    tags: dict[str, str] = field(default_factory=dict)  # tags of the trial's run
    texts: dict[str, str] = field(default_factory=dict)  # artifact file -> text, on the run
    files: tuple[str, ...] = ()  # local files to attach to the run
    params: dict[str, str] = field(default_factory=dict)  # the module's log_hyperparams


def reason_of(error: BaseException) -> str:
    """Why a trial failed, in one masked line: the error's type and first line."""
    return mask(describe_error(error))[:MAX_REASON]


def is_better(value: float, than: float, direction: str) -> bool:
    """Whether objective ``value`` beats ``than`` in ``direction``; anything beats NaN."""
    if math.isnan(than):
        return not math.isnan(value)
    return value > than if direction == "maximize" else value < than

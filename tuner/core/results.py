"""What a trial ended with, as slots report it to the sweep driver.

Kept free of torch and Lightning imports: the driver unpickles these from its slot
processes and never imports either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from optuna.trial import TrialState

from tuner.core.errors import describe_error
from tuner.core.masking import mask

MAX_REASON = 500  # characters of a failure reason kept on the trial and its run


@dataclass
class TrialResult:
    number: int
    state: TrialState
    values: list[float] | None = None
    reason: str | None = None  # why it failed
    pruned_at: int | None = None  # epoch at which it was pruned
    run_id: str | None = None
    seconds: float = 0.0


def reason_of(error: BaseException) -> str:
    """Why a trial failed, in one masked line: the error's type and first line."""
    return mask(describe_error(error))[:MAX_REASON]


def is_better(value: float, than: float, direction: str) -> bool:
    """Whether objective ``value`` beats ``than`` in ``direction``; anything beats NaN."""
    if math.isnan(than):
        return not math.isnan(value)
    return value > than if direction == "maximize" else value < than

"""The schedule a PBT winner followed: its lineage, generation 0 first, as people read it.

Each step is a segment of the winner's lineage (tuner.study.population.lineage): its
trial, member, epochs, how its values came from its parent's, and the values that change
along the lineage (a value no segment changed is the same at every step, and is shown
once, with the trial's params).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from optuna.trial import FrozenTrial

from tuner.core import attrs
from tuner.study.population import lineage, member_of


def winner_schedule(trials: Sequence[FrozenTrial], best: FrozenTrial) -> list[dict[str, Any]]:
    """The steps of ``best``'s lineage; empty when it is not a PBT segment."""
    if member_of(best) is None:
        return []
    chain = lineage(trials, best.number)
    changing = [key for key in best.params
                if len({repr(t.params.get(key)) for t in chain}) > 1]
    return [{"trial": t.number, "member": t.user_attrs[attrs.PBT_MEMBER_ATTR],
             "generation": t.user_attrs[attrs.PBT_GENERATION_ATTR],
             "epochs": list(t.user_attrs[attrs.PBT_EPOCHS_ATTR]),
             "op": t.user_attrs.get(attrs.PBT_OP_ATTR, "sampled"),
             "values": {key: t.params.get(key) for key in changing}}
            for t in chain]


def schedule_lines(schedule: Sequence[dict[str, Any]]) -> list[str]:
    """The schedule as lines under a heading; none for an empty one."""
    if not schedule:
        return []
    lines = ["schedule (the winner's lineage, generation 0 first):"]
    for step in schedule:
        start, end = step["epochs"]
        values = " ".join(f"{k}={_short(v)}" for k, v in step["values"].items())
        lines.append(f"  epochs {start + 1}-{end}: trial {step['trial']} (member "
                     f"{step['member']}, {step['op']})" + (f"  {values}" if values else ""))
    if not schedule[-1]["values"]:
        lines.append("  (no value changed along the lineage)")
    return lines


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)

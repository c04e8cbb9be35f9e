"""A metric computed in float32 kept as the float32 value it is, not its float64 noise.

Lightning hands metrics over as Python floats of float32 tensors: an accuracy of 59/60
arrives as 0.9833333492279053, and that noise reached every place a person reads a
value (Optuna's values and the dashboard, the parent run's best, the registry's tags,
MLflow's runs table). A float that a float32 holds exactly is replaced by the shortest
decimal that reads back as the same float32 (0.98333335): the same number at the
precision it was computed in. Any other float (computed in float64) is left as it is.
"""

from __future__ import annotations

import numpy as np


def as_computed(value: float) -> float:
    with np.errstate(over="ignore"):  # a float64 beyond float32's range: kept below
        single = np.float32(value)
    if not np.isfinite(single) or float(single) != value:
        return value
    return float(str(single))  # numpy prints a float32 as its shortest round-trip decimal

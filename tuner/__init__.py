"""tuner: hyperparameter tuning for PyTorch Lightning.

Hydra composes the configuration and the search space, Optuna drives the trials, each
trial trains a Lightning module, and MLflow records params, metrics and models. Most
people use the ``tuner`` command; the same steps are available from Python:

    from tuner import PlainReporter, compose_config, make_plan, run_sweep
    plan = make_plan(compose_config(["model=cnn", "n_trials=10"]))
    outcome = run_sweep(plan, PlainReporter())
"""

from importlib import import_module
from typing import Any

# Public names and the modules that define them. Imported on first use, so that
# `tuner --help` does not pay for importing torch, Lightning and MLflow.
_EXPORTS = {
    "ConfigError": "tuner.core.errors",
    "Problem": "tuner.core.errors",
    "SweepInterrupted": "tuner.core.errors",
    "SweepStopped": "tuner.core.errors",
    "compose_config": "tuner.config.compose",
    "SweepPlan": "tuner.config.plan",
    "make_plan": "tuner.config.plan",
    "PlainReporter": "tuner.app.progress",
    "SearchSpace": "tuner.config.space",
    "SweepOutcome": "tuner.app.sweep",
    "run_sweep": "tuner.app.sweep",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tuner' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)

"""The Optuna study: open or create it, join it, check it still matches the config.

``n_trials`` is a total for the study, not for one invocation: COMPLETE and PRUNED
trials count, FAIL trials do not, so re-running the same command tops the study up to
``n_trials`` and a failed trial is replaced.

A study remembers the fingerprint of its search space. Resuming with a different space
would mix trials drawn from different distributions (and mislead the sampler), so it is
refused with a message saying how to start a new study instead.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence

import optuna
from optuna.storages import BaseStorage

from tuner.config.plan import SweepPlan
from tuner.config.samplers import build_pruner, build_sampler
from tuner.core import attrs
from tuner.core.errors import ConfigError, Problem
from tuner.study.storage import find_study_id, journal_path


def open_study(plan: SweepPlan, storage: BaseStorage) -> optuna.Study:
    """Load the plan's study, checking directions and search space, or create it."""
    name = plan.study_name
    study_id = find_study_id(storage, name)
    directions = [optuna.study.StudyDirection[d.upper()] for d in plan.directions]
    n_existing = 0
    if study_id is not None:
        _check_resumable(plan, storage, study_id, directions)
        n_existing = len(storage.get_all_trials(study_id, deepcopy=False))
    study = optuna.create_study(
        storage=storage, study_name=name, directions=list(plan.directions),
        sampler=build_sampler(plan.cfg, plan.space, trials_so_far=n_existing),
        pruner=build_pruner(plan.cfg),
        load_if_exists=True)
    study.set_user_attr(attrs.N_TRIALS_ATTR, plan.cfg.n_trials)  # the budget last asked for
    if study_id is None:
        # tuner's own (a resume checks the fingerprint): system attributes, which
        # optuna-dashboard does not show (tuner.study.trial_attrs says why).
        created = storage.get_study_id_from_name(name)
        storage.set_study_system_attr(created, attrs.SPACE_FINGERPRINT_ATTR,
                                      plan.space.fingerprint())
        storage.set_study_system_attr(created, attrs.SPACE_ATTR, plan.space.to_json())
        storage.set_study_system_attr(created, attrs.STRATEGY_ATTR, _strategy(plan))
        storage.set_study_system_attr(created, attrs.COMPRESS_ATTR, _compression(plan))
        with warnings.catch_warnings():  # experimental since Optuna 3.2, still there in 5
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(plan.metrics))
    return study


def wait_for_journal(plan: SweepPlan, wait: float) -> float:
    """Wait up to ``wait`` seconds for the sweep to create the journal file a worker would
    join; return the seconds left. Opening a journal creates it, and fails when the run
    dir does not exist yet: a worker started beside its sweep must neither crash nor
    create the sweep's files. Other storages pass at once."""
    path = journal_path(plan.cfg.storage)
    deadline = time.monotonic() + wait
    while path is not None and not path.exists():
        if time.monotonic() >= deadline:
            raise _no_study_to_join(plan, f" (there is no journal at {path})")
        time.sleep(1.0)
    return max(0.0, deadline - time.monotonic())


def _no_study_to_join(plan: SweepPlan, detail: str = "") -> ConfigError:
    return ConfigError(Problem(
        plan.locate("study_name"), "study_name",
        f"there is no study '{plan.study_name}' in the storage to join{detail}",
        "start it with `tuner sweep` (same config) first, or check storage and "
        "study_name"))


def join_study(plan: SweepPlan, storage: BaseStorage, wait: float = 0.0) -> optuna.Study:
    """The plan's study, which must exist (within ``wait`` seconds: workers may start
    before the sweep has created it) and match the config (``tuner worker``)."""
    deadline = time.monotonic() + wait
    while (study_id := find_study_id(storage, plan.study_name)) is None:
        if time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    if study_id is None:
        raise _no_study_to_join(plan)
    directions = [optuna.study.StudyDirection[d.upper()] for d in plan.directions]
    _check_resumable(plan, storage, study_id, directions)
    # The sweep opens the study's MLflow parent run just after creating the study.
    while (attrs.PARENT_RUN_ATTR not in storage.get_study_user_attrs(study_id)
           and time.monotonic() < deadline):
        time.sleep(1.0)
    # The sampler's seed moves on by the trials there are, so that workers started at
    # different times on other machines propose different points.
    n_existing = len(storage.get_all_trials(study_id, deepcopy=False))
    return optuna.load_study(study_name=plan.study_name, storage=storage,
                             sampler=build_sampler(plan.cfg, plan.space, n_existing),
                             pruner=build_pruner(plan.cfg))


def _check_resumable(plan: SweepPlan, storage: BaseStorage, study_id: int,
                     directions: Sequence[optuna.study.StudyDirection]) -> None:
    name = plan.study_name
    new_name = f"study_name={name}-2"
    stored = storage.get_study_directions(study_id)
    if list(stored) != list(directions):
        raise ConfigError(Problem(
            plan.locate("direction"), "direction",
            f"study '{name}' was created to {', '.join(d.name.lower() for d in stored)}; "
            f"this config asks to {', '.join(plan.directions)}",
            f"start a new study ({new_name}) or restore the original direction"))
    stored_metrics = optuna.load_study(study_name=name, storage=storage).metric_names
    if stored_metrics is not None and list(stored_metrics) != list(plan.metrics):
        raise ConfigError(Problem(
            plan.locate("metric"), "metric",
            f"study '{name}' optimises {', '.join(stored_metrics)}; this config asks for "
            f"{', '.join(plan.metrics)}, and mixing them would rank trials by different "
            "measures", f"start a new study ({new_name}) or restore metric="
                        f"{','.join(stored_metrics)}"))
    strategy = storage.get_study_system_attrs(study_id).get(attrs.STRATEGY_ATTR, "search")
    if strategy != _strategy(plan):
        raise ConfigError(Problem(
            plan.locate("strategy.name"), "strategy",
            f"study '{name}' was run with {strategy}; this config asks for {_strategy(plan)}, "
            "and its trials would not fit together",
            f"start a new study ({new_name}) or restore the original strategy settings"))
    compression = storage.get_study_system_attrs(study_id).get(attrs.COMPRESS_ATTR, "none")
    if compression != _compression(plan):
        raise ConfigError(Problem(
            plan.locate("compress.method"), "compress",
            f"study '{name}' was run with compress: {compression}; this config asks for "
            f"{_compression(plan)}, and its trials' models would not be measured alike",
            f"start a new study ({new_name}) or restore the original compress settings"))
    fingerprint = (storage.get_study_system_attrs(study_id).get(attrs.SPACE_FINGERPRINT_ATTR)
                   or storage.get_study_user_attrs(study_id).get(attrs.SPACE_FINGERPRINT_ATTR))
    if fingerprint is not None and fingerprint != plan.space.fingerprint():
        raise ConfigError(Problem(
            plan.space.source, "search",
            f"the search space changed since study '{name}' began (fingerprint "
            f"{fingerprint}, now {plan.space.fingerprint()}); resuming would mix trials from "
            "different spaces",
            f"start a new study with {new_name} (or another name), or restore the original "
            "search space to resume"))


def _strategy(plan: SweepPlan) -> str:
    """How the study's trials are decided, as a resume compares it: "search", or the
    population's shape (its members, segments and what they mutate)."""
    p = plan.population
    if p is None:
        return "search"
    return (f"pbt (population {p.size}, {p.generations} segments of {p.interval} epochs, "
            f"mutable {', '.join(p.mutable)})")


def _compression(plan: SweepPlan) -> str:
    """How the study's models are compressed and measured, as a resume compares it."""
    if plan.compression is None:
        return "none"
    settings, methods = plan.cfg.compress, plan.compression.methods
    said = ["/".join(methods)]
    searched = {p.path for p in plan.space.params}
    if "prune" in methods and "compress.amount" not in searched:
        said.append(f"amount {settings.amount}" + (" structured" if settings.structured
                                                    else ""))
    if "qat" in methods and "compress.qat_start_epoch" not in searched:
        said.append(f"QAT from epoch {settings.qat_start_epoch}")
    threads = settings.latency_threads
    said.append(f"timed on {threads} thread{'' if threads == 1 else 's'}")
    return ", ".join(said)

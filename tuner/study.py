"""The Optuna study: open or create it, check it still matches the config, count budget.

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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import optuna
from hydra.utils import instantiate
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from tuner.errors import ConfigError, Problem
from tuner.masking import mask
from tuner.plan import SweepPlan
from tuner.tracking import tags

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
SCHEMA_LOCK_KEY = 0x7475_6E65_7200  # "tuner" in ASCII: one advisory lock per database


def quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def check_storage(storage_cfg, where: str) -> None:
    """Raise ConfigError unless the database server behind an RDB storage answers.

    Runs before anything is written: without it, a sweep pointed at a database that is
    down would start its slots, run the preflight and create the run dir, then fail with
    a traceback. File storages (the journal, SQLite) need no server and pass at once."""
    url = storage_cfg.get("url") if hasattr(storage_cfg, "get") else None
    if url is None or str(url).startswith("sqlite"):
        return
    import sqlalchemy

    engine = None
    try:
        engine = sqlalchemy.create_engine(str(url), **_engine_kwargs(
            storage_cfg.get("engine_kwargs") or {}))
        with engine.connect():
            pass
    except Exception as error:  # bad URL, missing driver, refused, auth: all the user's
        cause = getattr(error, "orig", None) or error
        raise ConfigError(Problem(
            where, "storage.url", f"cannot connect to the study's database at {mask(str(url))}: "
            f"{mask(_first_line(str(cause)))}",
            "start the database server, or point storage.url at one that runs (for "
            "storage=postgres: PGHOST, PGPORT, PGUSER, PGDATABASE; the password comes from "
            "PGPASSWORD or ~/.pgpass)")) from None
    finally:
        if engine is not None:
            engine.dispose()


def _engine_kwargs(engine_kwargs) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(engine_kwargs) if OmegaConf.is_config(engine_kwargs) \
        else dict(engine_kwargs)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def open_storage(storage_cfg) -> BaseStorage:
    quiet_optuna()
    url = storage_cfg.get("url") if hasattr(storage_cfg, "get") else None
    if url is not None and str(url).startswith("postgresql"):
        with _schema_lock(str(url), storage_cfg.get("engine_kwargs") or {}):
            return instantiate(storage_cfg)
    return instantiate(storage_cfg)


@contextmanager
def _schema_lock(url: str, engine_kwargs) -> Iterator[None]:
    """Serialise RDBStorage's first connection, which creates Optuna's tables: processes
    that start at once on an empty PostgreSQL database otherwise race on CREATE TABLE
    and all but one fail with a unique violation."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, **_engine_kwargs(engine_kwargs))
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"),
                               {"key": SCHEMA_LOCK_KEY})
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"),
                                   {"key": SCHEMA_LOCK_KEY})
                connection.commit()
    finally:
        engine.dispose()


def journal_path(storage_cfg) -> Path | None:
    """The journal file behind a journal-file storage config, if that is what it is."""
    log_storage = storage_cfg.get("log_storage") if hasattr(storage_cfg, "get") else None
    if log_storage is not None and "file_path" in log_storage:
        return Path(log_storage.file_path)
    return None


def find_study_id(storage: BaseStorage, name: str) -> int | None:
    try:
        return storage.get_study_id_from_name(name)
    except KeyError:
        return None


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
        sampler=plan.build_sampler(trials_so_far=n_existing), pruner=plan.build_pruner(),
        load_if_exists=True)
    study.set_user_attr(tags.N_TRIALS_ATTR, plan.cfg.n_trials)  # the budget last asked for
    if study_id is None:
        study.set_user_attr(tags.SPACE_FINGERPRINT_ATTR, plan.space.fingerprint())
        study.set_user_attr(tags.SPACE_ATTR, plan.space.to_json())
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
    while (tags.PARENT_RUN_ATTR not in storage.get_study_user_attrs(study_id)
           and time.monotonic() < deadline):
        time.sleep(1.0)
    return optuna.load_study(study_name=plan.study_name, storage=storage,
                             sampler=plan.build_sampler(), pruner=plan.build_pruner())


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
    attrs = storage.get_study_user_attrs(study_id)
    fingerprint = attrs.get(tags.SPACE_FINGERPRINT_ATTR)
    if fingerprint is not None and fingerprint != plan.space.fingerprint():
        raise ConfigError(Problem(
            plan.space.source, "search",
            f"the search space changed since study '{name}' began (fingerprint "
            f"{fingerprint}, now {plan.space.fingerprint()}); resuming would mix trials from "
            "different spaces",
            f"start a new study with {new_name} (or another name), or restore the original "
            "search space to resume"))


def best_trial(study: optuna.Study, trials: Sequence[FrozenTrial] | None = None
               ) -> FrozenTrial | None:
    """The COMPLETE trial with the best value of the study's first metric.

    For one metric this is Optuna's best trial; for several it is the point of the
    Pareto front that is best on the first metric (the one the champion is chosen by).
    Pass ``trials`` when they were just read, to save reading them again.

    Ties (common for accuracy on a small validation set) go to a trial whose model was
    logged, then to the lowest number: the champion is chosen from this trial, and with
    parallel slots two tied trials can both have tried to log their model, only one
    successfully.
    """
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        return None
    sign = 1 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else -1
    return max(complete, key=lambda t: (sign * t.values[0], tags.MODEL_URI_ATTR in t.user_attrs,
                                        -t.number))


def tell(study: optuna.Study, trial: optuna.Trial, **outcome) -> None:
    """``study.tell``, tolerating GridSampler's way of ending a study.

    GridSampler calls ``study.stop()`` after the trial that uses its last point, and
    ``stop()`` raises outside ``study.optimize()``. The trial's state is stored before
    that (Optuna stores it in a ``finally``), and the sweep loop checks
    :func:`grid_exhausted` before asking again, so that one error is safe to drop.
    """
    try:
        study.tell(trial, **outcome)
    except RuntimeError as error:
        if not (isinstance(study.sampler, optuna.samplers.GridSampler)
                and "Study.stop" in str(error)):
            raise


def grid_exhausted(study: optuna.Study) -> bool:
    sampler = study.sampler
    return isinstance(sampler, optuna.samplers.GridSampler) and sampler.is_exhausted(study)

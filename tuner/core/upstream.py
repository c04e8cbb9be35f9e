"""Every place tuner reaches into a library's private parts, and why.

Each function here uses something a library does not promise to keep: a private
attribute, a private module, an internal hook. They live in this one module so that an
upgrade has one place to look, and ``tests/test_upstream.py`` fails loudly, naming the
function, when a release moves what it relies on. Each says the versions it was checked
against (optuna 5.1.0, lightning 2.6.6, mlflow 3.17.2, Python 3.11) and what tuner does
without it. Library imports stay inside the functions: ``tuner.core`` is imported by
every process, the driver (no torch) and ``tuner --help`` (nothing heavy) included.

What went instead of coming here: Hydra's ``_internal._locate`` (``hydra.utils.get_object``
with Hydra's logger held quiet), OmegaConf's ``_get_node`` (``OmegaConf.is_missing``),
GridSampler's ``_n_min_trials`` (tuner counts the grid it hands the sampler), the journal
file's path read off its backend (tuner reads it from the storage config).
"""

from __future__ import annotations

import atexit
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage, JournalStorage

# -- Optuna --------------------------------------------------------------------------------


def storage_of(study: optuna.Study) -> BaseStorage:
    """``Study._storage``: the storage a study reads and writes (Optuna's own
    integrations use it too; there is no public accessor). Without it: nothing works."""
    return study._storage


def trial_id_of(trial: optuna.Trial | optuna.trial.FrozenTrial) -> int:
    """``Trial._trial_id`` / ``FrozenTrial._trial_id``: the storage's id of a trial,
    which the storage's own methods take (its number is per study)."""
    return trial._trial_id


# Optuna wraps an RDB storage in its ``_CachedStorage``, which reads and writes through
# these private methods of ``RDBStorage`` besides its public ones: a storage that waits
# out outages (tuner.study.outage) wraps them too. Without them: an outage that hits one
# of these calls ends the sweep at once, with a raw database error.
CACHED_STORAGE_CALLS = ("_create_new_trial", "_get_best_trial_id", "_get_stale_trial_ids",
                        "_get_trials", "_set_trial_param")


def refresh_cached_attrs(trial: optuna.Trial, user: dict[str, Any],
                         system: dict[str, Any]) -> None:
    """``Trial._cached_frozen_trial``: what ``trial.user_attrs`` reads (and
    ``FrozenTrial.system_attrs``). Attributes written around ``trial.set_user_attr``
    (:func:`journal_append_attrs`) are put there too, so the handle reads what the
    storage holds. Without it: the handle shows the attributes as they were when it was
    asked."""
    cached = getattr(trial, "_cached_frozen_trial", None)
    if cached is not None:
        cached.user_attrs.update(user)
        cached.system_attrs.update(system)


def journal_append_attrs(journal: JournalStorage, trial_id: int, user: dict[str, Any],
                         system: dict[str, Any]) -> bool:
    """Several ``set_trial_user_attr`` and ``set_trial_system_attr`` lines in one append
    (one lock, one fsync) on a journal storage: the very lines Optuna writes, through the
    private parts of ``JournalStorage`` (``_backend.append_logs``, ``_thread_lock``,
    ``_replay_result``, ``_sync_with_backend``) and the private ``JournalOperation``.
    Returns False, writing nothing, when a release moved any of them: the caller then
    sets each attribute in a call of its own (slower, the same result). Raises
    UpdateFinishedTrialError as Optuna does for a finished trial."""
    try:
        from optuna.storages.journal._storage import JournalOperation
    except ImportError:
        return False
    if not (hasattr(journal, "_backend") and hasattr(journal, "_thread_lock")
            and hasattr(journal, "_sync_with_backend")
            and hasattr(getattr(journal, "_replay_result", None), "worker_id")
            and hasattr(journal._backend, "append_logs")):
        return False
    worker_id = journal._replay_result.worker_id
    logs = [{"op_code": JournalOperation.SET_TRIAL_USER_ATTR, "worker_id": worker_id,
             "trial_id": trial_id, "user_attr": {key: value}} for key, value in user.items()]
    logs += [{"op_code": JournalOperation.SET_TRIAL_SYSTEM_ATTR, "worker_id": worker_id,
              "trial_id": trial_id, "system_attr": {key: value}}
             for key, value in system.items()]
    with journal._thread_lock:
        journal._backend.append_logs(logs)
        _replay_all(journal, len(logs))
    return True


def _replay_all(journal: JournalStorage, count: int) -> None:
    """Read back what was appended, as ``set_trial_user_attr`` does after its one line.
    Replaying a line of this worker's for a finished trial raises, and the lines after
    it would stay unread until some later, unrelated call replays (and raises for)
    them; so replay until all are read, then raise the first error."""
    from optuna.exceptions import UpdateFinishedTrialError

    error = None
    for _ in range(count):
        try:
            journal._sync_with_backend()
        except UpdateFinishedTrialError as raised:
            error = error or raised
            continue
        break
    if error is not None:
        raise error


def enqueued_params(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """The params ``study.enqueue_trial`` fixed for a trial (Optuna keeps them in the
    trial's ``fixed_params`` system attribute until it is sampled): what a PBT decision
    gave a segment that was cut short before it sampled them. Without it: its repeat
    would sample values of its own, which its parent's checkpoint may not fit."""
    return dict(trial.system_attrs.get("fixed_params") or {})


# -- Lightning -----------------------------------------------------------------------------

HOOK_NAME_ATTRIBUTE = "_current_fx_name"  # LightningModule: the hook Lightning is in


class FastHookName:
    """A LightningModule base that sets Lightning's ``_current_fx_name`` as a plain
    attribute. Lightning records the hook it is in there before and after every hook
    call, about 50 times per training step, each through ``nn.Module.__setattr__``,
    which searches parameters, buffers and submodules first; it only ever holds a hook
    name or None. The built-in models use it (a digits MLP trial trains ~6% faster,
    docs/benchmarks.md). Without it (a Lightning that renames the attribute): the same
    training at nn.Module's cost; test_upstream.py says so."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == HOOK_NAME_ATTRIBUTE:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)


def cache_callback_plugin_scan() -> None:
    """``lightning.fabric.utilities.registry.entry_points``: each ``Trainer()`` scans
    every installed package's entry points for callback factories (a large share of
    building a Trainer); a slot builds one per trial, and packages do not change under
    a running process, so the scan is cached. Without it: every Trainer scans."""
    from lightning.fabric.utilities import registry

    lookup = getattr(registry, "entry_points", None)
    if lookup is not None and not hasattr(lookup, "cache_info"):
        import functools

        registry.entry_points = functools.cache(lookup)


def launched_rank_processes(trainer: Any) -> list[Any]:
    """The ranks 1..k-1 that Lightning's subprocess launcher started for rank 0
    (``strategy.launcher.procs``), so rank 0 waits for them. Without it: rank 0
    returns at once, and its slot may read the trial's files a moment early."""
    launcher = getattr(trainer.strategy, "launcher", None)
    return list(getattr(launcher, "procs", []) or [])


def fresh_optimizers(module: Any) -> tuple[list[Any], list[Any]]:
    """``lightning.pytorch.core.optimizer._init_optimizers_and_lr_schedulers``: what the
    module's ``configure_optimizers`` builds, in Lightning's normal form (optimizers, and
    scheduler configs), whatever shape the module returned. A PBT child reads its own
    hyperparameters off it, to set them on the optimizer and schedule Lightning restored
    from its parent (tuner.trial.segment). Without it: a child would train with its
    parent's learning rate."""
    from lightning.pytorch.core.optimizer import _init_optimizers_and_lr_schedulers

    return _init_optimizers_and_lr_schedulers(module)


# -- MLflow --------------------------------------------------------------------------------


def mlflow_requirement_check() -> tuple[Any, str] | None:
    """Where MLflow checks one pinned requirement against the installed packages
    (``mlflow.utils.requirements_utils._check_requirement_satisfied``), as (module,
    name), for tuner.tracking.export_checks to answer a pin it can tell cheaply. None
    when a release moved it: MLflow's check then runs as it is (slower, never wrong)."""
    from mlflow.utils import requirements_utils

    name = "_check_requirement_satisfied"
    return (requirements_utils, name) if callable(getattr(requirements_utils, name, None)) \
        else None


def set_mlflow_default_artifact_folder(store: Path, folder: Path) -> None:
    """In a copy of a migrated empty SQLite store (tuner.tracking.local_store), point
    MLflow's default experiment (id 0, which MLflow makes when it migrates) at
    ``folder``, as MLflow would have for this store: one UPDATE of MLflow's
    ``experiments`` table. Without it: the default experiment, which tuner never uses,
    keeps the folder of the store the template was migrated in."""
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(store)) as db, db:
        db.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                   (str(folder),))


# -- Python --------------------------------------------------------------------------------


def run_exit_handlers() -> None:
    """``atexit._run_exitfuncs``: what a normal exit runs (logging, temporary folders,
    multiprocessing's clean-up) before the interpreter frees its modules, which a
    process holding torch, Lightning or MLflow pays seconds for; the caller then ends
    with ``os._exit``. Without it: the handlers are skipped."""
    run: Callable[[], None] | None = getattr(atexit, "_run_exitfuncs", None)
    if run is not None:
        run()

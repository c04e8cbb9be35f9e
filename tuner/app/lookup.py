"""Looking a study up without creating anything: ``tuner best``, ``ui``, ``serve``,
``report``, ``compare``, ``dashboard`` and ``sync`` find what a sweep wrote here.

Nothing here creates a store: asking about a study that does not exist, or a store
that is not there yet, is an error that says so, not an empty file left behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from tuner.app.compression import compression_record
from tuner.app.lineage import winner_schedule
from tuner.config.compose import Composed
from tuner.core import attrs
from tuner.core.errors import ConfigError, Problem
from tuner.study.storage import find_study_id, journal_path, open_storage, storage_file
from tuner.study.trial_attrs import trial_attr
from tuner.study.trials import best_trial, metric_names
from tuner.tracking import tags
from tuner.tracking.links import run_id_of
from tuner.tracking.local_store import SQLITE
from tuner.tracking.store_check import check_local_store


def _no_records(what: str, where: str) -> ConfigError:
    return ConfigError(Problem(where, "", f"no {what} there yet",
                               "run `tuner sweep` first, or point at the right place with "
                               "run_dir=... (and the same storage/tracking options the sweep "
                               "used)"))


def existing_storage(composed: Composed) -> BaseStorage:
    """The composed Optuna storage; a ConfigError if its file is not there (nothing here
    creates a store)."""
    cfg = composed.cfg
    path = storage_file(cfg.storage)
    if path is not None and not path.is_file():
        kind = "study journal" if journal_path(cfg.storage) is not None else "study database"
        raise _no_records(kind, str(path))
    return open_storage(cfg.storage)


def load_study(composed: Composed, name: str | None = None,
               storage: BaseStorage | None = None) -> optuna.Study:
    """The study ``name`` (default: the composed study_name) from ``storage`` (default:
    the composed one, opened here); a ConfigError that lists the studies there when it
    does not exist. Pass ``storage`` to read several studies from one opening (a
    journal is read whole each time it is opened)."""
    name = name or composed.cfg.study_name
    storage = storage if storage is not None else existing_storage(composed)
    if find_study_id(storage, name) is None:
        names = optuna.study.get_all_study_names(storage)
        raise ConfigError(Problem(
            "command line", "study", f"no study named '{name}' in this storage",
            f"studies here: {', '.join(names)}" if names else "the storage holds no study yet"))
    return optuna.load_study(study_name=name, storage=storage)


def best_report(composed: Composed) -> dict[str, Any]:
    study = load_study(composed)
    metrics = metric_names(study)
    trials = study.get_trials(deepcopy=False)
    best = best_trial(study)
    report: dict[str, Any] = {
        "study": study.study_name,
        "directions": [d.name.lower() for d in study.directions],
        "n_trials": study.user_attrs.get(attrs.N_TRIALS_ATTR),
        "complete": sum(t.state == TrialState.COMPLETE for t in trials),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "failed": sum(t.state == TrialState.FAIL for t in trials),
        "best": None,
    }
    if best is not None:
        report["best"] = {
            "number": best.number,
            "values": dict(zip(metrics, best.values, strict=True)),
            "params": best.params,
            "mlflow_run_id": run_id_of(best, study.user_attrs),
            "config": trial_attr(best, attrs.CONFIG_ATTR, ""),
        }
        compression = compression_record(best, metrics)
        if compression is not None:  # compress=...: the compressed model's figures
            report["best"]["compressed"] = compression
        schedule = winner_schedule(trials, best)
        if schedule:  # strategy=pbt: the values the winner followed, segment by segment
            report["best"]["schedule"] = schedule
    if len(study.directions) > 1:
        report["pareto_front"] = sorted(t.number for t in study.best_trials)
    return report


def existing_tracking_uri(composed: Composed) -> str:
    uri = composed.cfg.tracking.tracking_uri
    if uri.startswith(SQLITE):
        db = Path(uri.removeprefix(SQLITE))
        if not db.is_file():
            raise _no_records("MLflow store", str(db))
        check_local_store(uri, composed.locate("tracking"))
    return uri


def champion_uri(composed: Composed) -> str:
    from mlflow import MlflowClient

    from tuner.core.quiet import quiet_mlflow
    from tuner.tracking.registry import current_champion

    quiet_mlflow()
    uri = existing_tracking_uri(composed)
    name = composed.cfg.study_name
    client = MlflowClient(uri, registry_uri=uri)
    if current_champion(client, name) is None:
        crowned = sorted(m.name for m in client.search_registered_models()
                         if tags.CHAMPION_ALIAS in (m.aliases or {}))
        if crowned:  # a mistyped name, most likely: say which ones can be served
            raise ConfigError(Problem(uri, "study", f"study '{name}' has no champion model; "
                                      f"these have one: {', '.join(crowned)}",
                                      f"give one of them, e.g. tuner serve {crowned[0]}"))
        raise ConfigError(Problem(uri, "study", f"study '{name}' has no champion model",
                                  "run `tuner sweep` for it to completion first (with "
                                  "tracking.register_champion=true)"))
    return f"models:/{name}@{tags.CHAMPION_ALIAS}"

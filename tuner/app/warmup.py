"""One-time costs the driver pays while its slots start.

A sweep's start is a relay: the slot imports torch and Lightning and trains the
preflight batch while the driver waits; then the driver opens the study and the MLflow
records while the slot waits. Each side uses the other's turn:

- the driver, while its slots import torch and run the preflight, imports MLflow's
  store code (about a second on this project's machines), migrates a new MLflow store
  in a temporary folder (over a second; tuner.tracking.local_store) and draws the
  report's plots once on a made-up study (seconds of first-use imports and fonts;
  tuner.app.pages.study_plots.warm_plots). Nothing is written where the user looks before the
  preflight passes;
- the slot has none to pay: it never imports MLflow while it trains (the driver writes
  its records, tuner.launch.run_writer).
"""

from __future__ import annotations

import contextlib
import threading
import warnings

import optuna

from tuner.core.quiet import quiet_mlflow, quiet_optuna
from tuner.tracking.local_store import prebuilder
from tuner.tracking.preload import import_store_code


def warm_driver_in_background(tracking_uri: str, report: bool) -> threading.Thread:
    """Pay the driver's first-use costs on a daemon thread (see the module's notes),
    ``report``: also the report's plots. Imports that the main thread reaches meanwhile
    wait for it under Python's import lock; a store still being migrated is waited for
    by ``ensure_local_store``. A step that fails here is only paid later, where the
    main thread meets (and reports) the same error."""
    # Now, not when the main thread would: the store's migrations and the made-up study
    # log at INFO, which would reach the user's console.
    quiet_mlflow()
    quiet_optuna()
    build_store = prebuilder(tracking_uri)  # registered now: the main thread waits for it
    if report:
        # Process-wide and set here, on the main thread: warnings.catch_warnings is not
        # thread-safe, so the plots drawn on the warm-up thread cannot use it. These
        # warnings are about Optuna features that tuner chose, nothing a user can act on.
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    def warm() -> None:
        with contextlib.suppress(Exception):
            import_store_code(tracking_uri)
        if build_store is not None:
            with contextlib.suppress(Exception):
                build_store()
        if report:
            from tuner.app.pages.study_plots import warm_plots

            with contextlib.suppress(Exception):
                warm_plots()

    thread = threading.Thread(target=warm, name="tuner-warmup", daemon=True)
    thread.start()
    return thread

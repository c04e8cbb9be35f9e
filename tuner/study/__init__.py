"""Optuna only: where a study lives, opening and joining it, and the budget.

storage (Optuna's storages, opened once the database answers), studies (open, join,
check that a study still matches its config), trials (the best trial, telling Optuna),
budget (claiming the next trial under a lock, so the study ends with exactly
``n_trials``), leases (who trains a RUNNING trial, and reaping it when they died) and
retries (which failed trial runs again). Never imports MLflow (tuner.tracking).
"""

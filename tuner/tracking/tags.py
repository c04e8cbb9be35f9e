"""Names tuner gives its MLflow tags and Optuna attributes, in one place.

MLflow and Optuna point at each other: a trial's user attribute holds its MLflow run
id, and the run's tags hold the study name and trial number.
"""

# MLflow run tags
PARENT_RUN = "mlflow.parentRunId"  # MLflow's own tag: nests a run under another
ROLE = "tuner.role"  # "study" for the parent run, "trial" for a child run
STUDY = "tuner.study"
TRIAL_NUMBER = "tuner.trial_number"
STATE = "tuner.state"  # the Optuna state: COMPLETE, PRUNED or FAIL
PRUNED = "tuner.pruned"  # "true" on pruned trials (their MLflow status is FINISHED)
PRUNED_AT_EPOCH = "tuner.pruned_at_epoch"
FAIL_REASON = "tuner.fail_reason"
RETRY_OF = "tuner.retry_of"  # on a repeat of a failed trial: the first attempt's number
RESUMED_FROM_EPOCH = "tuner.resumed_from_epoch"  # epochs a resumed run had trained before
WORLD_SIZE = "tuner.world_size"  # DDP processes the trial trained on; only rank 0 logs
BEST_TRIAL = "tuner.best_trial_number"
BEST_PARAM_PREFIX = "tuner.best_param."

# Optuna trial user attributes
RUN_ID_ATTR = "mlflow_run_id"
MODEL_URI_ATTR = "mlflow_model_uri"
MODEL_ERROR_ATTR = "model_error"  # why the trial's model could not be logged
CONFIG_ATTR = "config"  # the trial's composed config, YAML
SEED_ATTR = "seed"
FAIL_REASON_ATTR = "fail_reason"
OWNER_ATTR = "owner"  # "host:pid" of the slot process training the trial
SUPERVISOR_ATTR = "supervisor"  # "host:pid" of the driver that records it if the owner dies
LEASE_ATTR = "lease_until"  # unix seconds; its owner renews it while the trial trains
WORLD_SIZE_ATTR = "world_size"  # processes the trial trained on (DDP ranks)
RETRY_OF_ATTR = "retry_of"  # a repeat of a failed trial: the number of the first attempt
ATTEMPT_ATTR = "attempt"  # 1 for a trial's first attempt, 2 for its first repeat, ...
RESUMED_FROM_EPOCH_ATTR = "resumed_from_epoch"  # a repeat that resumed: epochs already trained
RESUME_ERROR_ATTR = "resume_error"  # why a repeat started over although a checkpoint was there

# Optuna study user attributes
PARENT_RUN_ATTR = "mlflow_parent_run_id"
SPACE_FINGERPRINT_ATTR = "search_space_fingerprint"
SPACE_ATTR = "search_space"
N_TRIALS_ATTR = "n_trials"

# Model registry
CHAMPION_ALIAS = "champion"
VERSION_VALUE = "tuner.value"  # the champion's value of the study's first metric

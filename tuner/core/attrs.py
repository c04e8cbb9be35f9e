"""Names of the attributes tuner keeps on Optuna trials and studies, in one place.

Those a person reading the study needs are user attributes (optuna-dashboard shows
them); those only tuner reads are system attributes: a trial's ``SYSTEM_TRIAL_ATTRS``
(tuner.study.trial_attrs writes and reads them) and the study's search space and its
fingerprint (tuner.study.studies).

MLflow and Optuna point at each other: a trial's user attribute holds its MLflow run
id (here), and the run's tags hold the study name and trial number
(:mod:`tuner.tracking.tags`).
"""

# Trial user attributes
RUN_ID_ATTR = "mlflow_run_id"
MODEL_URI_ATTR = "mlflow_model_uri"
MODEL_ERROR_ATTR = "model_error"  # why the trial's model could not be logged
MODEL_WEIGHTS_ATTR = "model_weights"  # a new best's kept weights, exported at the end
CONFIG_ATTR = "config"  # the trial's composed config, YAML
SEED_ATTR = "seed"
FAIL_REASON_ATTR = "fail_reason"
PRUNED_REASON_ATTR = "pruned_because"  # a trial stopped for a NaN, not by its pruner's rule
OWNER_ATTR = "owner"  # "host:pid" of the slot process training the trial
SUPERVISOR_ATTR = "supervisor"  # "host:pid" of the driver that records it if the owner dies
LEASE_ATTR = "lease_until"  # unix seconds; its owner renews it while the trial trains
WORLD_SIZE_ATTR = "world_size"  # processes the trial trained on (DDP ranks)
RETRY_OF_ATTR = "retry_of"  # a repeat of a failed trial: the number of the first attempt
ATTEMPT_ATTR = "attempt"  # 1 for a trial's first attempt, 2 for its first repeat, ...
RESUMED_FROM_EPOCH_ATTR = "resumed_from_epoch"  # a repeat that resumed: epochs already trained
RESUME_ERROR_ATTR = "resume_error"  # why a repeat started over although a checkpoint was there
# Epochs a trial trained, where it reports none to Optuna (a multi-objective study).
EPOCHS_ATTR = "epochs_trained"
# compress=...: the compressed model's figures, {"compressed/val_acc": .., "model/size_mb": ..}
MEASURED_ATTR = "measured"
COMPRESSED_WITH_ATTR = "compressed_with"  # the method those figures are of: int8, prune, ...
# Population-based training (tuner.study.population): a segment's place in the population.
PBT_MEMBER_ATTR = "pbt.member"  # which member of the population (0 .. population-1)
PBT_GENERATION_ATTR = "pbt.generation"
PBT_EPOCHS_ATTR = "pbt.epochs"  # [start, end): the epochs the segment trains
PBT_PARENT_ATTR = "pbt.parent"  # the trial whose checkpoint it continues; absent in generation 0
PBT_OP_ATTR = "pbt.op"  # keep | perturb | resample (how its values came from its parent's)
PBT_EXPLORED_ATTR = "pbt.explored"  # what exploring did to each key: {"model.lr": "x1.2"}
PBT_CHECKPOINT_ATTR = "pbt.checkpoint"  # the parent's checkpoint it starts from
PBT_CHECKPOINT_SHA_ATTR = "pbt.checkpoint_sha256"  # what that file must hash to
PBT_END_SHA_ATTR = "pbt.end_checkpoint_sha256"  # its own checkpoint at its end, once saved
PBT_THREADS_ATTR = "pbt.threads"  # torch threads its slot trained with (a replay uses as many)

# tuner's own, kept out of the dashboard's sight (system attributes)
SYSTEM_TRIAL_ATTRS = frozenset({OWNER_ATTR, SUPERVISOR_ATTR, LEASE_ATTR, CONFIG_ATTR,
                                MODEL_WEIGHTS_ATTR})

# Study user attributes
PARENT_RUN_ATTR = "mlflow_parent_run_id"
SPACE_FINGERPRINT_ATTR = "search_space_fingerprint"
SPACE_ATTR = "search_space"
N_TRIALS_ATTR = "n_trials"
COMPRESS_ATTR = "compress"  # how its models are compressed and measured (a system attribute)
STRATEGY_ATTR = "strategy"  # "search", or PBT's population settings (a system attribute)

"""Names tuner gives its MLflow run tags and model-registry entries, in one place.

The Optuna side of the links (a trial's run id, the study's parent run) is named in
:mod:`tuner.core.attrs`.
"""

# A trial run's param beside its sampled ones (which are named by their config path)
SEED_PARAM = "seed"

# MLflow run tags
PARENT_RUN = "mlflow.parentRunId"  # MLflow's own tag: nests a run under another
RUN_NAME = "mlflow.runName"  # MLflow's own tag: setting it renames the run
ROLE = "tuner.role"  # "study" for the parent run, "trial" for a child run, "comparison"
STUDY = "tuner.study"
TRIAL_NUMBER = "tuner.trial_number"
STATE = "tuner.state"  # the Optuna state: COMPLETE, PRUNED or FAIL
PRUNED = "tuner.pruned"  # "true" on pruned trials (their MLflow status is FINISHED)
PRUNED_AT_EPOCH = "tuner.pruned_at_epoch"
PRUNED_BECAUSE = "tuner.pruned_because"  # a NaN loss, weight or metric: not the pruner's rule
FAIL_REASON = "tuner.fail_reason"
RETRY_OF = "tuner.retry_of"  # on a repeat of a failed trial: the first attempt's number
RESUMED_FROM_EPOCH = "tuner.resumed_from_epoch"  # epochs a resumed run had trained before
WORLD_SIZE = "tuner.world_size"  # DDP processes the trial trained on; only rank 0 logs
BEST_TRIAL = "tuner.best_trial_number"
BEST_PARAM_PREFIX = "tuner.best_param."
JOB = "tuner.job"  # on a scheduled round's parent run: the job it is a round of
ROUND = "tuner.round"  # ... and its number (1, 2, ...)
DECISION = "tuner.decision"  # ... and what it did with the champion: promoted, kept, none
DECISION_WHY = "tuner.decision_why"
PBT_MEMBER = "tuner.pbt.member"  # population-based training: a segment's member ...
PBT_GENERATION = "tuner.pbt.generation"  # ... its generation ...
PBT_EPOCHS = "tuner.pbt.epochs"  # ... the epochs it trained ("5-6": its 5th and 6th) ...
PBT_OP = "tuner.pbt.op"  # ... how its values came from its parent's (keep, perturb, resample)
PBT_PARENT_TRIAL = "tuner.pbt.parent_trial"  # ... the segment it continues ...
PBT_PARENT_RUN = "tuner.pbt.parent_run"  # ... and that segment's run
HP_PREFIX = "hp/"  # a mutable hyperparameter as a metric at each epoch: one curve per member
COMPARED_STUDIES = "tuner.compared_studies"  # on a comparison run: the studies, comma-separated

# Model registry
CHAMPION_ALIAS = "champion"
VERSION_VALUE = "tuner.value"  # the champion's value of the study's first metric ...
VERSION_METRIC = "tuner.metric"  # ... and that metric's name

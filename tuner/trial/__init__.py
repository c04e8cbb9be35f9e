"""One trial, in the process that trains it: Lightning and torch live here.

build (config -> DataModule, LightningModule, Trainer), fit (the one place a model is
trained), pruning (epoch reports to Optuna), checkpoints and resume (a repeat of a trial
cut short continues where it stopped), weights and model (a new best's weights kept; the
best's model exported once, at the end), preflight (one batch before anything is
written) and lifecycle (a claimed trial from its lease to its last record: run, record,
interruption). Uses the study and tracking layers; never
starts processes (tuner.launch does).
"""

"""One trial: what a slot is ordered to train, and how it trains it.

order (what the driver hands a slot), train (the slot's side of a trial: order in,
result out), build (config -> DataModule, LightningModule, Trainer), fit (the one place
a model is trained), pruning (epoch reports to Optuna), checkpoints and resume (a repeat
of a trial cut short continues where it stopped), weights and model (a new best's
weights kept; the best's model exported once, at the end), preflight (one batch before
anything is written), evaluate (a trained model validated on other data). order,
resume and weights are free of torch: the driver uses them. Uses the study and
tracking layers; never starts processes (tuner.launch does).
"""

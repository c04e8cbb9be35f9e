"""The digits MLP sweep written by hand, two ways, for comparison with `tuner sweep`.

Both replay a given list of trials (the params a `tuner sweep` sampled, read back from
its study and enqueued here), so that all sides train exactly the same trials for the
same number of epochs: the same architecture, optimizer, weight decay on weights only,
learning-rate schedule stepped per optimizer step, gradient clipping and accumulation,
and the same data split.

- ``raw``: what the fastest hand-written loop looks like. Plain PyTorch: the data set
  lives in tensors, batches are slices of a permutation, no DataLoader; Optuna's
  ask/tell against a journal file; nothing recorded beyond the study.
- ``lightning``: the sweep the common way, as tutorials write it. A LightningModule that
  logs with ``self.log``, a ``DataLoader`` over a ``TensorDataset``, a default
  ``Trainer`` (its progress bar, model summary and checkpoint per trial),
  Lightning's ``MLFlowLogger`` (SQLite), optuna-integration's
  ``PyTorchLightningPruningCallback``, and Optuna's SQLite storage.

    python benchmarks/by_hand.py raw|lightning --trials trials.json --epochs 10 --out DIR

Prints one line of JSON: the best value, and each trial's training seconds.

``lightning --sample N --pruner median|none`` instead runs the common way's own study of
N trials, as a user would start it: Optuna's TPE sampler seeded with ``--seed`` and
Optuna's ``MedianPruner`` (or none) through the pruning callback. The JSON then also
holds each finished trial's state, value and end time (Unix seconds), for
benchmarks/time_to_quality.py.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import optuna
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from tuner.models.optim import OptimSettings, build_optimizer, build_scheduler

EPOCHS = 10


def digits() -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """The same split as tuner's data=digits (val_fraction 0.2, split_seed 0)."""
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    x_tr, x_va, y_tr, y_va = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    return ((torch.from_numpy(x_tr), torch.from_numpy(y_tr.astype(np.int64))),
            (torch.from_numpy(x_va), torch.from_numpy(y_va.astype(np.int64))))


def suggest(trial: optuna.Trial) -> dict:
    """conf/search/mlp.yaml, written out by hand (enqueued trials fix every value)."""
    p = {"optimizer": trial.suggest_categorical(
        "model.optimizer", ["sgd", "adagrad", "rmsprop", "adam", "adamw"])}
    p["lr"] = trial.suggest_float("model.lr", 1e-4, 1e-1, log=True)
    p["momentum"] = (trial.suggest_float("model.momentum", 0.0, 0.95)
                     if p["optimizer"] in ("sgd", "rmsprop") else 0.0)
    p["weight_decay"] = trial.suggest_float("model.weight_decay", 1e-6, 1e-2, log=True)
    p["dropout"] = trial.suggest_float("model.dropout", 0.0, 0.5)
    p["width"] = trial.suggest_int("model.width", 32, 256, step=32)
    p["lr_schedule"] = trial.suggest_categorical("model.lr_schedule", ["constant", "cosine"])
    p["batch_size"] = trial.suggest_categorical("data.batch_size", [32, 64, 128])
    p["clip"] = trial.suggest_float("trainer.gradient_clip_val", 0.1, 5.0, log=True)
    p["accumulate"] = trial.suggest_int("trainer.accumulate_grad_batches", 1, 2)
    return p


def mlp(p: dict) -> nn.Sequential:
    layers: list[nn.Module] = []
    fan_in = 64
    for _ in range(2):
        layers += [nn.Linear(fan_in, p["width"]), nn.ReLU(), nn.Dropout(p["dropout"])]
        fan_in = p["width"]
    return nn.Sequential(*layers, nn.Linear(fan_in, 10))


def optimizer(model: nn.Module, p: dict) -> torch.optim.Optimizer:
    """tuner's own optimizer builder (tuner.models.optim imports torch only): every side
    must train identical trials."""
    return build_optimizer(model.named_parameters(), settings(p))


def schedule(opt: torch.optim.Optimizer, p: dict, total_steps: int):
    return build_scheduler(opt, total_steps, settings(p))


def settings(p: dict) -> OptimSettings:
    return OptimSettings(optimizer=p["optimizer"], lr=p["lr"], momentum=p["momentum"],
                         weight_decay=p["weight_decay"], lr_schedule=p["lr_schedule"])


def steps_per_epoch(rows: int, p: dict) -> int:
    return math.ceil(math.ceil(rows / p["batch_size"]) / p["accumulate"])


# -- raw PyTorch -------------------------------------------------------------------------

def raw_trial(p: dict, seed: int, epochs: int, data) -> float:
    (x, y), (xv, yv) = data
    torch.manual_seed(seed)
    model = mlp(p)
    opt = optimizer(model, p)
    sched = schedule(opt, p, steps_per_epoch(len(x), p) * epochs)
    bs, k = p["batch_size"], p["accumulate"]
    batches = math.ceil(len(x) / bs)
    acc = 0.0
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x))
        xs, ys = x[order], y[order]
        for i in range(batches):
            loss = nn.functional.cross_entropy(model(xs[i * bs:(i + 1) * bs]),
                                               ys[i * bs:(i + 1) * bs])
            (loss / k).backward()
            if (i + 1) % k == 0 or i + 1 == batches:
                nn.utils.clip_grad_norm_(model.parameters(), p["clip"])
                opt.step()
                opt.zero_grad()
                sched.step()
        model.eval()
        with torch.no_grad():
            acc = (model(xv).argmax(-1) == yv).float().mean().item()
    return acc


def run_raw(trials: list[dict], epochs: int, out: Path, seed: int) -> dict:
    data = digits()
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(out / "optuna.journal")))
    study = optuna.create_study(study_name="by-hand", storage=storage, direction="maximize")
    seconds = []
    for params in trials:
        study.enqueue_trial(params)
        trial = study.ask()
        start = time.perf_counter()
        value = raw_trial(suggest(trial), seed + trial.number, epochs, data)
        seconds.append(time.perf_counter() - start)
        study.tell(trial, value)
    return {"best": study.best_value, "trial_seconds": seconds}


# -- the common way: Lightning + DataLoader + MLFlowLogger + pruning callback -----------

def run_lightning(trials: list[dict], epochs: int, out: Path, seed: int, sample: int = 0,
                  pruner: str = "none") -> dict:
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import MLFlowLogger
    from optuna_integration import PyTorchLightningPruningCallback
    from torch.utils.data import DataLoader, TensorDataset

    (x, y), (xv, yv) = digits()

    class Module(pl.LightningModule):
        def __init__(self, p: dict, total_steps: int):
            super().__init__()
            self.p, self.total_steps = p, total_steps
            self.net = mlp(p)

        def forward(self, inputs):
            return self.net(inputs)

        def training_step(self, batch, batch_idx):
            inputs, targets = batch
            loss = nn.functional.cross_entropy(self(inputs), targets)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, batch_idx):
            inputs, targets = batch
            logits = self(inputs)
            self.log("val_loss", nn.functional.cross_entropy(logits, targets))
            self.log("val_acc", (logits.argmax(-1) == targets).float().mean())

        def configure_optimizers(self):
            opt = optimizer(self.net, self.p)
            return {"optimizer": opt, "lr_scheduler": {
                "scheduler": schedule(opt, self.p, self.total_steps), "interval": "step"}}

    def objective(trial: optuna.Trial) -> float:
        p = suggest(trial)
        pl.seed_everything(seed + trial.number, workers=True)
        train = DataLoader(TensorDataset(x, y), batch_size=p["batch_size"], shuffle=True)
        val = DataLoader(TensorDataset(xv, yv), batch_size=p["batch_size"])
        module = Module(p, steps_per_epoch(len(x), p) * epochs)
        trainer = pl.Trainer(
            max_epochs=epochs, accelerator="cpu", default_root_dir=str(out),
            gradient_clip_val=p["clip"], accumulate_grad_batches=p["accumulate"],
            logger=MLFlowLogger(experiment_name="by-hand",
                                tracking_uri=f"sqlite:///{out / 'mlflow.db'}",
                                run_name=f"trial-{trial.number}"),
            callbacks=[PyTorchLightningPruningCallback(trial, monitor="val_acc")])
        trainer.logger.log_hyperparams(p)
        trainer.fit(module, train, val)
        return float(trainer.callback_metrics["val_acc"])

    storage = f"sqlite:///{out / 'optuna.db'}"
    if sample:  # the common way's own study: TPE, and the median pruner or none
        chosen = (optuna.pruners.MedianPruner() if pruner == "median"
                  else optuna.pruners.NopPruner())
        study = optuna.create_study(study_name="by-hand", storage=storage, direction="maximize",
                                    sampler=optuna.samplers.TPESampler(seed=seed),
                                    pruner=chosen)
        study.optimize(objective, n_trials=sample)
        return {"best": study.best_value, "trials": [
            {"state": t.state.name, "value": t.value, "end": t.datetime_complete.timestamp()}
            for t in study.trials if t.datetime_complete is not None]}
    # The callback reports every epoch as the common way does, but nothing is pruned:
    # Optuna's default pruner (median) would cut trials short that tuner's side
    # (pruner=none) trains in full, and the sides would no longer do the same work.
    study = optuna.create_study(study_name="by-hand", storage=storage,
                                direction="maximize", pruner=optuna.pruners.NopPruner())
    seconds = []
    for params in trials:
        study.enqueue_trial(params)
        start = time.perf_counter()
        study.optimize(objective, n_trials=1)
        seconds.append(time.perf_counter() - start)
    unfinished = [t.number for t in study.trials if t.state != optuna.trial.TrialState.COMPLETE]
    if unfinished:
        raise SystemExit(f"trials {unfinished} did not train to the end: the sides would "
                         "not have done the same work")
    return {"best": study.best_value, "trial_seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("way", choices=("raw", "lightning"))
    parser.add_argument("--trials", type=Path,
                        help="JSON list of params per trial, as Optuna stored them")
    parser.add_argument("--sample", type=int, default=0,
                        help="lightning only: sample this many trials with TPE instead")
    parser.add_argument("--pruner", choices=("median", "none"), default="none",
                        help="with --sample: Optuna's MedianPruner, or none")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--seed", type=int, default=0, help="trial t trains with seed + t")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.sample:
        if args.way != "lightning":
            parser.error("--sample runs the common way: use it with lightning")
        print(json.dumps(run_lightning([], args.epochs, args.out, args.seed, args.sample,
                                       args.pruner)))
        return
    if args.trials is None:
        parser.error("give --trials (the trials to replay) or --sample N")
    trials = json.loads(args.trials.read_text())
    run = run_raw if args.way == "raw" else run_lightning
    print(json.dumps(run(trials, args.epochs, args.out, args.seed)))


if __name__ == "__main__":
    main()

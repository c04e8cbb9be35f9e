"""A user's own module through `tuner sweep --config-dir`, against the same sweep the
common way: issue 13's target is tuner at most 0.6x the common way's wall time.

The module and its data are examples/lightning_docs/docs_lit.py, written as the
Lightning docs teach: a LightningDataModule handing out DataLoaders, ``self.log`` on
every training step and in validation, one Adam optimizer. Nothing in it knows tuner.

- ``tuner``: `tuner sweep --config-dir examples/lightning_docs/conf model=docs_mlp
  data=docs_digits search=docs_space`, with tuner's defaults (``slots=auto``: a slot
  per core; the best model exported and registered at the end) except ``pruner=none``.
- ``common``: the same module and DataModule in an Optuna objective, as users write it:
  a default ``Trainer`` (progress bar, model summary, a checkpoint per trial),
  Lightning's ``MLFlowLogger`` on SQLite, optuna-integration's
  ``PyTorchLightningPruningCallback``, Optuna's SQLite storage, ``study.optimize`` with
  its defaults (one trial at a time). It replays the trials tuner sampled (enqueued, the
  same seeds), so both sides train the same trials for the same epochs. Its study gets
  ``NopPruner``: with Optuna's default (median) the callback would cut trials short that
  tuner's side trains in full, and the sides would no longer do the same work.

Each run times both whole commands in fresh processes and new folders, tuner first (it
samples the trials the common way replays). Printed: each run, the medians and their
ratio, the best value each side reached, the date and the machine. The common way needs
`pip install -e ".[bench]"` (optuna-integration).

    python benchmarks/user_module.py [--runs 3] [--trials 30] [--epochs 10]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from common import machine, run_sweep

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent / "examples" / "lightning_docs"
STUDY = "docs_digits-docs_mlp"


def suggest(trial: optuna.Trial) -> dict:
    """examples/lightning_docs/conf/search/docs_space.yaml, written out by hand."""
    return {"lr": trial.suggest_float("model.lr", 1e-4, 1e-1, log=True),
            "weight_decay": trial.suggest_float("model.weight_decay", 1e-6, 1e-2, log=True),
            "dropout": trial.suggest_float("model.dropout", 0.0, 0.5),
            "width": trial.suggest_int("model.width", 32, 256, step=32),
            "batch_size": trial.suggest_categorical("data.batch_size", [32, 64, 128])}


def common_way(trials: list[dict], epochs: int, out: Path, seed: int) -> dict:
    """The common way's sweep of ``trials`` (run in its own process): best value."""
    import lightning.pytorch as pl
    from docs_lit import DigitsClassifier, DigitsData
    from lightning.pytorch.loggers import MLFlowLogger
    from optuna_integration import PyTorchLightningPruningCallback

    def objective(trial: optuna.Trial) -> float:
        p = suggest(trial)
        pl.seed_everything(seed + trial.number)
        data = DigitsData(batch_size=p.pop("batch_size"))
        model = DigitsClassifier(**p)
        trainer = pl.Trainer(
            max_epochs=epochs, default_root_dir=str(out),
            logger=MLFlowLogger(experiment_name=STUDY, run_name=f"trial-{trial.number}",
                                tracking_uri=f"sqlite:///{out / 'mlflow.db'}"),
            callbacks=[PyTorchLightningPruningCallback(trial, monitor="val_acc")])
        trainer.fit(model, datamodule=data)
        return trainer.callback_metrics["val_acc"].item()

    study = optuna.create_study(study_name=STUDY, storage=f"sqlite:///{out / 'optuna.db'}",
                                direction="maximize", pruner=optuna.pruners.NopPruner())
    for params in trials:
        study.enqueue_trial(params)
    study.optimize(objective, n_trials=len(trials))
    unfinished = [t.number for t in study.trials if t.state.name != "COMPLETE"]
    if unfinished:
        raise SystemExit(f"trials {unfinished} did not complete: the sides would not have "
                         "done the same work")
    return {"best": study.best_value}


def environment() -> dict[str, str]:
    """The user's project importable, as the README asks (installed or on PYTHONPATH)."""
    path = os.pathsep.join(p for p in (str(PROJECT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path}


def run_tuner(trials: int, epochs: int) -> tuple[float, list[dict], float]:
    """Wall seconds, the trials' params (in trial order), the best value."""
    sweep = run_sweep("--config-dir", str(PROJECT / "conf"), "model=docs_mlp",
                      "data=docs_digits", "search=docs_space", f"n_trials={trials}",
                      f"trainer.max_epochs={epochs}", "pruner=none", study=STUDY,
                      env=environment())
    done = sorted(sweep.study.get_trials(states=[optuna.trial.TrialState.COMPLETE]),
                  key=lambda t: t.number)
    if len(done) != trials:
        sys.exit(f"tuner completed {len(done)} of {trials} trials")
    return sweep.wall, [t.params for t in done], sweep.study.best_value


def run_common(cwd: Path, params: list[dict], epochs: int) -> tuple[float, float]:
    """Wall seconds (a fresh interpreter, imports included), the best value."""
    trials_file = cwd / "trials.json"
    trials_file.write_text(json.dumps(params))
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(Path(__file__)), "--common-way", str(trials_file),
         "--epochs", str(epochs), "--out", str(cwd)],
        cwd=cwd, env=environment(), capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"the common way failed:\n{result.stdout}\n{result.stderr}")
    return wall, json.loads(result.stdout.strip().splitlines()[-1])["best"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--common-way", type=Path, metavar="TRIALS_JSON",
                        help=argparse.SUPPRESS)  # the common way's own process
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.common_way is not None:
        trials = json.loads(args.common_way.read_text())
        print(json.dumps(common_way(trials, args.epochs, args.out, seed=0)))
        return

    wall: dict[str, list[float]] = {"tuner": [], "common": []}
    for run in range(args.runs):
        # tuner samples the trials, so it always goes first: if anything, the order
        # favours the common way, which finds the same files in the page cache.
        t_wall, params, t_best = run_tuner(args.trials, args.epochs)
        with tempfile.TemporaryDirectory(prefix="common-user-") as common_dir:
            c_wall, c_best = run_common(Path(common_dir), params, args.epochs)
        wall["tuner"].append(t_wall)
        wall["common"].append(c_wall)
        print(f"run {run + 1}: tuner {t_wall:.1f} s (best {t_best:.4f}); "
              f"common way {c_wall:.1f} s (best {c_best:.4f})", flush=True)
    tuner, common = statistics.median(wall["tuner"]), statistics.median(wall["common"])
    print(f"{args.trials} trials x {args.epochs} epochs of examples/lightning_docs's module "
          f"(self.log every step, DataLoaders), pruner=none; medians of {args.runs} runs")
    print(f"tuner {tuner:.1f} s vs the common way {common:.1f} s: tuner takes "
          f"{tuner / common:.2f}x the common way's wall time (target: at most 0.6x)")
    print(f"date: {datetime.date.today()}; machine: {machine()}")


if __name__ == "__main__":
    main()

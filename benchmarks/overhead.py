"""`tuner sweep` against the same sweep written by hand (benchmarks/by_hand.py).

Each run first runs `tuner sweep` (the digits MLP, the default search space, fixed
epochs: pruner=none) in a new folder, reads back the params of every trial it trained,
and has each hand-written sweep train exactly those trials with the same seeds. So all
sides do the same work; what differs is the platform around it.

- ``raw``: plain PyTorch on in-memory tensors + Optuna ask/tell (journal file), no
  tracking. tuner's target: within 1.3x of it.
- ``lightning``: the common way (default Lightning Trainer with a DataLoader,
  MLFlowLogger, optuna-integration's pruning callback, SQLite storage). tuner's
  target: at least 2x faster. Needs `pip install -e ".[bench]"`.

Reports per run and as medians over runs: the whole command (start-up included) and the
median time a trial takes (tuner: from one trial's end to the next's in the study, so
with its MLflow records, since the driver claims a trial while the one before trains
and its start in the study is earlier than its training's; by hand: the objective's
call), with the
ratios, the best value each side reached, and the date and machine.

    python benchmarks/overhead.py [--runs 3] [--trials 40] [--epochs 10] [--against raw lightning]
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from common import machine, run_sweep
from optuna.trial import TrialState

HERE = Path(__file__).resolve().parent


def run_tuner(trials: int, epochs: int) -> tuple[float, list[dict], float, float]:
    """Wall seconds, the trials' params, the median trial seconds, the best value."""
    # One slot, as the hand-written sweeps train one trial at a time: the platform's own
    # cost, not what a second core adds (benchmarks/time_default_sweep.py measures that).
    sweep = run_sweep(f"n_trials={trials}", f"trainer.max_epochs={epochs}", "pruner=none",
                      "slots=1")
    study = sweep.study
    done = sorted((t for t in study.trials if t.state == TrialState.COMPLETE),
                  key=lambda t: t.number)
    ends = sorted(t.datetime_complete for t in done)
    seconds = [(b - a).total_seconds() for a, b in itertools.pairwise(ends)]
    return sweep.wall, [t.params for t in done], statistics.median(seconds), study.best_value


def run_by_hand(way: str, cwd: Path, params: list[dict], epochs: int
                ) -> tuple[float, float, float]:
    """Wall seconds, the median trial seconds, the best value."""
    out = cwd / way
    out.mkdir()
    trials_file = out / "trials.json"
    trials_file.write_text(json.dumps(params))
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(HERE / "by_hand.py"), way, "--trials", str(trials_file),
         "--epochs", str(epochs), "--out", str(out)],
        cwd=out, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{way} sweep failed:\n{result.stdout}\n{result.stderr}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return wall, statistics.median(report["trial_seconds"]), report["best"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--against", nargs="+", choices=("raw", "lightning"),
                        default=["raw", "lightning"])
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sides = ["tuner", *args.against]
    wall: dict[str, list[float]] = {s: [] for s in sides}
    trial: dict[str, list[float]] = {s: [] for s in sides}
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="tuner-bench-") as tmp:
            cwd = Path(tmp)
            w, params, t, best = run_tuner(args.trials, args.epochs)
            line = [f"tuner {w:.1f} s (trial {t:.3f} s, best {best:.4f})"]
            wall["tuner"].append(w)
            trial["tuner"].append(t)
            # Alternate the order of the hand-written sides between runs.
            for way in (args.against if run % 2 == 0 else args.against[::-1]):
                w, t, best = run_by_hand(way, cwd, params, args.epochs)
                wall[way].append(w)
                trial[way].append(t)
                line.append(f"{way} {w:.1f} s (trial {t:.3f} s, best {best:.4f})")
        print(f"run {run + 1}: " + "; ".join(line), flush=True)

    med_wall = {s: statistics.median(v) for s, v in wall.items()}
    med_trial = {s: statistics.median(v) for s, v in trial.items()}
    print(f"{args.trials} trials x {args.epochs} epochs, digits MLP, default search space, "
          f"pruner=none; medians of {args.runs} runs")
    for way in args.against:
        print(f"tuner vs {way}: whole command {med_wall['tuner']:.1f} s vs "
              f"{med_wall[way]:.1f} s ({way}/tuner {med_wall[way] / med_wall['tuner']:.2f}x); "
              f"trial {med_trial['tuner']:.3f} s vs {med_trial[way]:.3f} s "
              f"({way}/tuner {med_trial[way] / med_trial['tuner']:.2f}x)")
    print(f"date: {datetime.date.today()}; machine: {machine()}")


if __name__ == "__main__":
    main()

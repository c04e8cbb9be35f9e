"""Time to quality: how soon a sweep first reaches a good value, tuner against the common way.

For each seed, four sweeps of the digits MLP over the default search space (30 trials,
up to 10 epochs), each in a new folder:

- tuner: `tuner sweep seed=S` with its defaults (TPE, the median pruner, slots=auto);
  and the same with `pruner=none`, which sets tuner's reference value;
- the common way (benchmarks/by_hand.py `lightning --sample`: Lightning's default
  Trainer, a DataLoader, MLFlowLogger, optuna-integration's pruning callback, SQLite
  storage, one trial at a time): TPE seeded with S and Optuna's `MedianPruner`; and the
  same with no pruner, which sets the common way's reference value.

A side's time to quality is the wall time from the command's start to the end of the
first trial whose value is within 0.5 points (0.005 val_acc) of the best value that
the same side reaches without pruning, on the same seed. A pruned sweep that never gets
there counts its whole wall time and is flagged. Reported per seed and as medians, with
the ratio (target: tuner at most 0.5x the common way).

    python benchmarks/time_to_quality.py [--seeds 5] [--trials 30]

Needs optuna-integration (`pip install -e ".[bench]"`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
from common import machine, run_sweep
from optuna.trial import TrialState

HERE = Path(__file__).resolve().parent
WITHIN = 0.005  # 0.5 points of val_acc


@dataclass(frozen=True)
class Sweep:
    wall: float
    best: float
    ends: list[tuple[float, float]]  # (seconds from the command's start, value), COMPLETE only


def tuner_sweep(seed: int, trials: int, *extra: str) -> Sweep:
    start = time.time()
    sweep = run_sweep(f"seed={seed}", f"n_trials={trials}", *extra)
    done = sweep.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ends = sorted((t.datetime_complete.timestamp() - start, t.value) for t in done)
    return Sweep(sweep.wall, sweep.study.best_value, ends)


def common_sweep(seed: int, trials: int, pruner: str) -> Sweep:
    with tempfile.TemporaryDirectory(prefix="tuner-bench-") as out:
        start = time.time()
        result = subprocess.run(
            [sys.executable, str(HERE / "by_hand.py"), "lightning", "--sample", str(trials),
             "--pruner", pruner, "--seed", str(seed), "--out", out],
            capture_output=True, text=True)
        wall = time.time() - start
    if result.returncode != 0:
        sys.exit(f"the common way failed:\n{result.stdout}\n{result.stderr}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    ends = sorted((t["end"] - start, t["value"]) for t in report["trials"]
                  if t["state"] == "COMPLETE")
    return Sweep(wall, report["best"], ends)


def time_to(sweep: Sweep, reference: float) -> tuple[float, bool]:
    """Seconds until the first trial within WITHIN of ``reference``; (wall, False) if none."""
    for seconds, value in sweep.ends:
        if value >= reference - WITHIN:
            return seconds, True
    return sweep.wall, False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=30)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    times: dict[str, list[float]] = {"tuner": [], "common": []}
    for seed in range(args.seeds):
        runs = {
            "tuner": lambda s=seed: tuner_sweep(s, args.trials),
            "tuner-none": lambda s=seed: tuner_sweep(s, args.trials, "pruner=none"),
            "common": lambda s=seed: common_sweep(s, args.trials, "median"),
            "common-none": lambda s=seed: common_sweep(s, args.trials, "none"),
        }
        order = list(runs) if seed % 2 == 0 else list(reversed(runs))
        got = {name: runs[name]() for name in order}
        line = []
        for side in ("tuner", "common"):
            reference = got[f"{side}-none"].best
            seconds, reached = time_to(got[side], reference)
            times[side].append(seconds)
            line.append(f"{side}: {seconds:.1f} s to {reference - WITHIN:.4f}"
                        + ("" if reached else " (never reached: whole wall time)")
                        + f" (best {got[side].best:.4f}, wall {got[side].wall:.1f} s; "
                          f"unpruned best {reference:.4f}, wall {got[side + '-none'].wall:.1f} s)")
        print(f"seed {seed}: " + "; ".join(line), flush=True)
    tuner, common = (statistics.median(times[side]) for side in ("tuner", "common"))
    print(f"median time to quality: tuner {tuner:.1f} s, common way {common:.1f} s: "
          f"tuner takes {tuner / common:.2f}x the common way's time (target <= 0.5x)")
    print(f"{args.trials} trials, up to 10 epochs, digits MLP, default search space; "
          f"date: {datetime.date.today()}; machine: {machine()}")


if __name__ == "__main__":
    main()

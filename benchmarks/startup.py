"""Start-up: a whole 1-trial, 1-epoch `tuner sweep` against a bare
`python -c "import lightning.pytorch"`, side by side, and where the sweep's time goes on
its way to the first training step.

Each run times the bare import (a fresh interpreter) and the sweep (a new empty folder:
it pays a first sweep's costs), alternating which goes first. The sweep trains
benchmarks/stamps.py's ``StampedMLP``, the built-in digits MLP that writes a timestamp
when it is built, at its first training step and when its fit ends (the preflight's
batch comes first, then trial 0's); a ``sitecustomize`` (benchmarks/startup_site/)
adds one when each process's interpreter is up and when some of tuner's steps start and
end. Printed: both medians and their ratio, then the median time from the command's
start to each step.

    python benchmarks/startup.py [--runs 5] [-- more overrides]
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from common import machine, tuner_command

HERE = Path(__file__).resolve().parent
SWEEP = ("n_trials=1", "trainer.max_epochs=1", "model._target_=stamps.StampedMLP")


def bare_import() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import lightning.pytorch"], check=True)
    return time.perf_counter() - start


def sweep(overrides: list[str]) -> tuple[float, list[tuple[float, str]]]:
    """The whole command's seconds, and (seconds from its start, step) for each stamp."""
    with tempfile.TemporaryDirectory(prefix="tuner-startup-") as cwd:
        stamps = Path(cwd) / "stamps.txt"
        env = {**os.environ, "TUNER_BENCH_STAMPS": str(stamps), "PYTHONPATH": os.pathsep.join(
            [str(HERE / "startup_site"), str(HERE), os.environ.get("PYTHONPATH", "")])}
        start = time.time()
        process = subprocess.Popen([*tuner_command(), "sweep", *SWEEP, *overrides], cwd=cwd,
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True)
        steps, output = [], []
        for line in process.stdout:
            output.append(line)
            if line.startswith("trial 0 "):
                steps.append((time.time() - start, "driver prints trial 0's result"))
        process.wait()
        wall = time.time() - start
        if process.returncode != 0:
            sys.exit("the sweep failed:\n" + "".join(output))
        steps += _read(stamps, start)
    return wall, sorted(steps)


def _read(stamps: Path, start: float) -> list[tuple[float, str]]:
    """Stamps named by process and order: the first interpreter is the driver's; the
    model's first build, step and fit end are the preflight's, the second trial 0's, and
    a third build is the export of the best model at the end."""
    lines = [line.split(" ", 2) for line in stamps.read_text().splitlines()]
    driver, slots = lines[0][1], []
    counts: dict[str, int] = defaultdict(int)
    steps = []
    for when, pid, event in lines:
        if event == "interpreter up":
            if pid != driver and slots:
                continue  # another slot: the first one's is the way to trial 0
            if pid != driver:
                slots.append(pid)
            name = f"{'driver' if pid == driver else 'slot'} interpreter up"
        elif event.endswith((" starts", " ends")):  # a step of tuner's (startup_site)
            name = f"{'driver' if pid == driver else 'slot'}: {event}"
        else:
            counts[event] += 1
            name = f"{('preflight', 'trial 0', 'export')[min(counts[event], 3) - 1]}: {event}"
        steps.append((float(when) - start, name))
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("overrides", nargs="*", help="more overrides for the sweep")
    args = parser.parse_args()
    bare, whole = [], []
    steps: dict[str, list[float]] = defaultdict(list)
    for run in range(args.runs):
        order = ("bare", "sweep") if run % 2 == 0 else ("sweep", "bare")
        for side in order:
            if side == "bare":
                bare.append(bare_import())
            else:
                wall, timeline = sweep(args.overrides)
                whole.append(wall)
                for seconds, name in timeline:
                    steps[name].append(seconds)
        print(f"run {run + 1}: import lightning.pytorch {bare[-1]:.2f} s, "
              f"tuner sweep {' '.join(SWEEP[:2])} {whole[-1]:.2f} s", flush=True)
    b, w = statistics.median(bare), statistics.median(whole)
    print(f"python -c 'import lightning.pytorch': median {b:.2f} s")
    print(f"tuner sweep {' '.join(SWEEP[:2] + tuple(args.overrides))}: median {w:.2f} s")
    print(f"sweep / bare import: {w / b:.2f}x")
    print("the way to the first training step (median seconds from the command's start):")
    for name, times in sorted(steps.items(), key=lambda item: statistics.median(item[1])):
        print(f"  {statistics.median(times):6.2f}  {name}")
    print(f"  {w:6.2f}  command exited")
    print(f"date: {datetime.date.today()}; machine: {machine()}")


if __name__ == "__main__":
    main()

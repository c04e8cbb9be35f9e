"""The overhead benchmark, shrunk to a smoke check: it runs end to end, and the
hand-written loop really trains the same trials as tuner (same best value).

No timing is asserted: figures come from the full benchmark on a quiet machine
(docs/benchmarks.md), never from a test.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_overhead_benchmark_runs_and_both_sides_train_the_same_trials():
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "overhead.py"), "--runs", "1", "--trials", "3",
         "--epochs", "2", "--against", "raw"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"tuner vs raw: whole command [\d.]+ s vs [\d.]+ s", result.stdout)
    bests = dict(re.findall(r"(tuner|raw) [\d.]+ s \(trial [\d.]+ s, best ([\d.]+)\)",
                            result.stdout))
    # Same params, seeds, data order and arithmetic: the same accuracy, to the digit.
    assert bests.keys() == {"tuner", "raw"}, result.stdout
    assert bests["tuner"] == bests["raw"], result.stdout
    assert "date: " in result.stdout and "machine: " in result.stdout

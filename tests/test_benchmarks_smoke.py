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


def test_every_step_that_the_startup_benchmark_stamps_is_in_tuner():
    """benchmarks/startup.py wraps these of tuner's functions by name as their modules
    load: a rename would break the benchmark's sweep, not tuner."""
    import importlib
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "startup_site", BENCHMARKS / "startup_site" / "sitecustomize.py")
    site = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(site)  # without TUNER_BENCH_STAMPS it only defines STEPS
    for module_name, steps in site.STEPS.items():
        module = importlib.import_module(module_name)
        for step in steps:
            holder = module
            for part in step.split("."):
                holder = getattr(holder, part)
            assert callable(holder), f"{module_name}.{step}"


def test_the_user_module_benchmark_searches_the_same_space_on_both_sides():
    """benchmarks/user_module.py writes docs_space.yaml out by hand for the common way:
    the two must ask Optuna for the same distributions, or the common way could not
    replay tuner's trials (it would refuse the enqueued values, or sample others)."""
    import optuna
    import yaml

    from tuner.config.space_parse import parse

    sys.path.insert(0, str(BENCHMARKS))
    try:
        from user_module import PROJECT, suggest
    finally:
        sys.path.remove(str(BENCHMARKS))
    source = PROJECT / "conf/search/docs_space.yaml"
    space = parse(yaml.safe_load(source.read_text()), str(source))
    study = optuna.create_study()
    trial = study.ask()
    suggest(trial)
    assert trial.distributions == {p.path: p.distribution for p in space.params}

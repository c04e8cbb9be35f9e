"""What every benchmark script shares: the command under test, one timed sweep, and the
machine it ran on."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import optuna
from optuna.storages import InMemoryStorage, JournalStorage
from optuna.storages.journal import JournalFileBackend


def tuner_command() -> list[str]:
    script = shutil.which("tuner")
    return [script] if script else [sys.executable, "-m", "tuner"]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    packages = ", ".join(f"{p} {version(p)}" for p in ("torch", "lightning", "optuna", "mlflow"))
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {packages}"


@dataclass(frozen=True)
class Sweep:
    wall: float  # seconds for the whole command, start-up and exit included
    stdout: str
    study: optuna.Study | None  # copied into memory (its folder is gone); None if not asked


def run_sweep(*overrides: str, study: str | None = "digits-mlp",
              command: list[str] | None = None, env: dict[str, str] | None = None) -> Sweep:
    """Time one `tuner sweep` in a new empty folder, so each run pays a first sweep's
    costs (store creation, preflight, imports); exits with its output if it fails."""
    with tempfile.TemporaryDirectory(prefix="tuner-bench-") as cwd:
        start = time.perf_counter()
        result = subprocess.run([*(command or tuner_command()), "sweep", *overrides],
                                cwd=cwd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if result.returncode != 0:
            sys.exit(f"`tuner sweep {' '.join(overrides)}` in {command or tuner_command()} "
                     f"failed:\n{result.stdout}\n{result.stderr}")
        copy = None
        if study is not None:
            optuna.logging.set_verbosity(optuna.logging.WARNING)  # "study created in memory"
            journal = JournalStorage(JournalFileBackend(str(Path(cwd) / "runs/optuna.journal")))
            memory = InMemoryStorage()
            optuna.copy_study(from_study_name=study, from_storage=journal, to_storage=memory)
            copy = optuna.load_study(study_name=study, storage=memory)
    return Sweep(wall, result.stdout, copy)

"""What every benchmark script shares: the command under test and the machine it ran on."""

from __future__ import annotations

import os
import platform
import shutil
import sys
from importlib.metadata import version


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

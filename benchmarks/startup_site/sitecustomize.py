"""benchmarks/startup.py puts this folder on PYTHONPATH: each Python process of the sweep
(the driver, its slots) says when its interpreter is up, before it imports anything."""

import os
import time

if os.environ.get("TUNER_BENCH_STAMPS"):
    with open(os.environ["TUNER_BENCH_STAMPS"], "a") as f:
        f.write(f"{time.time():.6f} {os.getpid()} interpreter up\n")

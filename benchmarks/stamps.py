"""Timestamps from inside a sweep, for benchmarks/startup.py (run with PYTHONPATH=benchmarks).

``StampedMLP`` is the built-in digits MLP that appends a line to the file named by
``TUNER_BENCH_STAMPS`` when it is built, at its first training step and when its fit
ends; ``sitecustomize`` (benchmarks/startup_site/) adds one when each Python process
starts and when some of tuner's steps start and end. A line: ``<unix seconds> <pid>
<event>``.
"""

from __future__ import annotations

import os
import time

from tuner.models.mlp import MLPClassifier


def stamp(event: str) -> None:
    path = os.environ.get("TUNER_BENCH_STAMPS")
    if path:
        with open(path, "a") as f:  # one short append per line: lines do not interleave
            f.write(f"{time.time():.6f} {os.getpid()} {event}\n")


class StampedMLP(MLPClassifier):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        stamp("model built")
        self._stepped = False

    def on_train_batch_start(self, batch, batch_idx):
        if not self._stepped:
            self._stepped = True
            stamp("first training step")

    def on_fit_end(self):
        stamp("fit ended")

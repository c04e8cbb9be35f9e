"""benchmarks/startup.py puts this folder on PYTHONPATH: each Python process of the sweep
(the driver, its slots) says when its interpreter is up, and when some of tuner's steps
start and end, without a line of tuner changed: the functions below are wrapped as
their modules are imported. A line: ``<unix seconds> <pid> <event>``."""

import functools
import importlib.abc
import importlib.util
import os
import sys
import time

PATH = os.environ.get("TUNER_BENCH_STAMPS")

# module -> the functions (or Class.method) in it whose start and end are stamped
STEPS = {
    "tuner.trial.preflight": ["preflight"],
    "tuner.study.studies": ["open_study"],
    "tuner.tracking.runs": ["Tracker.__init__", "Tracker.open"],
    "tuner.tracking.preload": ["import_store_code", "warm_model_export"],
    "tuner.launch.slot": ["Slot.serve"],
    "tuner.launch.pool": ["SlotPool.finish"],
    "tuner.trial.train": ["train"],
    "tuner.trial.model": ["export_best"],
    "tuner.app.finish": ["finish_records"],
}


def stamp(event):
    with open(PATH, "a") as f:  # one short append per line: lines do not interleave
        f.write(f"{time.time():.6f} {os.getpid()} {event}\n")


def _timed(name, function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        stamp(f"{name} starts")
        try:
            return function(*args, **kwargs)
        finally:
            stamp(f"{name} ends")

    return wrapper


class _Wrap(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the modules of STEPS with the other finders, then wraps their functions."""

    def find_spec(self, name, path, target=None):
        if name not in STEPS:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None:
            return None
        self.real = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec):
        return self.real.create_module(spec)

    def exec_module(self, module):
        self.real.exec_module(module)
        for step in STEPS[module.__name__]:
            owner, _, attribute = step.rpartition(".")
            holder = getattr(module, owner) if owner else module
            setattr(holder, attribute, _timed(step, getattr(holder, attribute)))


if PATH:
    stamp("interpreter up")
    sys.meta_path.insert(0, _Wrap())

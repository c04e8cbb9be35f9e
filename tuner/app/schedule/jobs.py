"""The schedule file: named jobs, each a cron expression and the `tuner sweep` arguments
to run then. Plain YAML that a user can read and edit by hand:

    jobs:
      nightly:
        cron: 0 3 * * *
        config_dir: conf          # relative to this file's folder; omit for tuner's own conf
        overrides: [model=cnn, search=cnn]
        trials: 40                # a round's budget in trials (else the config's n_trials)
        seconds: 3600             # ... and in wall time: no trial starts after it
        warm_start: 3             # a round first tries the best 3 params of earlier rounds
        margin: 0.002             # the challenger must beat the champion by more than this
        added: '2026-11-24T02:14:05+00:00'

Each run of a job is a round (tuner.app.schedule.rounds) with a study of its own,
``<job>-r<N>``. Jobs run in the folder that holds the file (the project), so relative
paths in their overrides (run_dir=...) are read from there.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import yaml

from tuner.app.schedule.files import write_atomically
from tuner.config.locate import display_path
from tuner.core.errors import ConfigError, Problem

SCHEDULE_FILE = "tuner-schedule.yaml"
JOB_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$")
JOB_NAME_HELP = "a letter, then up to 63 letters, digits, '_' or '-', e.g. nightly_cnn"
JOB_KEYS = ("cron", "config_dir", "overrides", "trials", "seconds", "warm_start", "margin",
            "added")
WARM_START = 3  # params of earlier rounds a round tries first, unless the job says
NOT_IN_OVERRIDES = ("study_name",)  # a round names its study itself: <job>-r<N>

HEADER = """\
# tuner schedule: `tuner schedule run` starts a round of each job (`tuner schedule round
# NAME`: a sweep with the job's overrides, in a study of its own, <job>-r<N>) in this
# folder when its cron expression matches (host's local time). Per job: trials and
# seconds (a round's budget), warm_start (best params of earlier rounds tried first),
# margin (by how much a round's best must beat the champion on the round's data).
# Edit by hand or with `tuner schedule add/remove`. config_dir must be this folder or
# one below it: configs are code (`_target_` imports what it names).
"""


@dataclass(frozen=True)
class Job:
    name: str
    cron: str
    overrides: tuple[str, ...] = ()
    config_dir: str | None = None  # as written: relative to the project folder
    added: datetime | None = None  # due from this minute on; None: from when first seen
    trials: int | None = None  # a round's n_trials; None: the config's
    seconds: float | None = None  # a round's timeout; None: the config's
    warm_start: int = WARM_START  # best params of earlier rounds enqueued first
    margin: float = 0.0  # how much the challenger must beat the champion by

    def to_yaml(self) -> dict:
        entry: dict = {"cron": self.cron}
        if self.config_dir is not None:
            entry["config_dir"] = self.config_dir
        entry["overrides"] = list(self.overrides)
        for key in ("trials", "seconds"):
            if getattr(self, key) is not None:
                entry[key] = getattr(self, key)
        if self.warm_start != WARM_START:
            entry["warm_start"] = self.warm_start
        if self.margin:
            entry["margin"] = self.margin
        if self.added is not None:
            entry["added"] = self.added.isoformat(timespec="seconds")
        return entry


@dataclass
class Schedule:
    path: Path
    jobs: dict[str, Job] = field(default_factory=dict)

    @property
    def project_dir(self) -> Path:
        return self.path.resolve().parent

    @property
    def where(self) -> str:
        return display_path(self.path)

    def save(self) -> None:
        body = yaml.safe_dump({"jobs": {n: j.to_yaml() for n, j in self.jobs.items()}},
                              sort_keys=False, default_flow_style=None, width=100)
        write_atomically(self.path, HEADER + body)


def check_name(name: str, where: str, key: str) -> None:
    if not JOB_NAME.match(name):
        raise ConfigError(Problem(where, key, f"'{name}' is not a job name",
                                  f"use {JOB_NAME_HELP}"))


def load_schedule(path: Path) -> Schedule:
    """The schedule in ``path`` (empty when there is no file yet). A file that is not a
    schedule raises ConfigError naming the file and the key."""
    schedule = Schedule(path)
    if not path.exists():
        return schedule
    where = display_path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(Problem(f"{where}{line}", "", f"invalid YAML: "
                                  f"{getattr(error, 'problem', error)}",
                                  "fix the YAML syntax at that line")) from error
    jobs = data.get("jobs") if isinstance(data, dict) else None
    if not isinstance(data, dict) or set(data) - {"jobs"} or not isinstance(jobs, dict | None):
        raise ConfigError(Problem(where, "jobs", "the file must hold one mapping, 'jobs:', "
                                  "of job names to jobs", "see the comment at the top of a "
                                  "file written by `tuner schedule add`"))
    problems = []
    for name, entry in (jobs or {}).items():
        try:
            schedule.jobs[str(name)] = _job(str(name), entry, where)
        except ConfigError as error:
            problems += error.problems
    if problems:
        raise ConfigError(problems)
    return schedule


def _job(name: str, entry: object, where: str) -> Job:
    check_name(name, where, f"jobs.{name}")
    key = f"jobs.{name}"
    if not isinstance(entry, dict):
        raise ConfigError(Problem(where, key, "must be a mapping with cron and overrides",
                                  "write e.g. {cron: '0 3 * * *', overrides: [n_trials=60]}"))
    unknown = sorted(set(map(str, entry)) - set(JOB_KEYS))
    if unknown:
        raise ConfigError(Problem(where, f"{key}.{unknown[0]}", "is not a job setting",
                                  f"valid keys: {', '.join(JOB_KEYS)}"))
    cron = entry.get("cron")
    if not isinstance(cron, str):
        raise ConfigError(Problem(where, f"{key}.cron", "is required and must be a string",
                                  "write e.g. cron: '0 3 * * *'"))
    overrides = entry.get("overrides") or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ConfigError(Problem(where, f"{key}.overrides", "must be a list of strings",
                                  "write e.g. overrides: [n_trials=60, model=cnn]"))
    config_dir = entry.get("config_dir")
    if config_dir is not None and not isinstance(config_dir, str):
        raise ConfigError(Problem(where, f"{key}.config_dir", "must be a path (a string)",
                                  "write a folder relative to this file, e.g. conf"))
    settings = _round_settings(entry, where, key)
    added = entry.get("added")
    if added is not None:
        try:
            added = (added if isinstance(added, datetime)
                     else datetime.fromisoformat(str(added))).astimezone()
        except ValueError as error:
            raise ConfigError(Problem(where, f"{key}.added", f"'{added}' is not a time",
                                      "write an ISO time, e.g. 2026-11-24T02:14:05+00:00, "
                                      "or remove the key")) from error
    return Job(name=name, cron=cron, overrides=tuple(overrides), config_dir=config_dir,
               added=added, **settings)


def check_round_overrides(overrides: list[str], where: str, key: str) -> None:
    """A round names its study and sets its budget itself; the job says it elsewhere."""
    from tuner.config.locate import override_key

    for override in overrides:
        if override_key(override) in NOT_IN_OVERRIDES:
            raise ConfigError(Problem(
                where, key, f"'{override}': a round sets {override_key(override)} itself",
                "remove it: each round has a study of its own, named <job>-r<N>"))


def check_round_setting(name: str, value: object, where: str, key: str, fix: str) -> None:
    """Raise ConfigError (naming ``where`` and ``key``) unless ``value`` can be the job's
    round setting ``name``: the one rule for the schedule file and the command line."""
    valid, what = ROUND_SETTINGS[name]
    if not valid(value):
        raise ConfigError(Problem(where, key, f"must be {what}, got {value!r}", fix))


def _round_settings(entry: dict, where: str, key: str) -> dict:
    """The job's round settings, each checked: ConfigError names the key."""
    settings: dict = {}
    for name in ROUND_SETTINGS:
        value = entry.get(name)
        if value is not None:
            check_round_setting(name, value, where, f"{key}.{name}", f"fix or remove {name}:")
            settings[name] = value
    check_round_overrides(entry.get("overrides") or [], where, f"{key}.overrides")
    return settings


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


ROUND_SETTINGS = {  # name: (is it valid, what it must be)
    "trials": (lambda v: _is_int(v) and v >= 1, "a whole number of trials >= 1"),
    "seconds": (lambda v: _is_number(v) and v > 0, "a positive number of seconds"),
    "warm_start": (lambda v: _is_int(v) and v >= 0, "a whole number >= 0"),
    "margin": (lambda v: _is_number(v) and v >= 0, "a number >= 0"),
}

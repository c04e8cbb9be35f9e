"""One round of a scheduled job: `tuner schedule round NAME`, what every timetable runs.

    check the job                   compose and plan exactly as `tuner sweep` would
    take the job's lock             on the study storage: two rounds never overlap
    reap a round that was killed    its RUNNING trials FAIL, its runs KILLED
    a study of its own              <job>-r<N>, with the job's budget (trials, seconds)
    warm start                      the best params of earlier rounds are tried first
    the sweep                       as `tuner sweep`, minus the champion's promotion
    champion against challenger     the champion measured on *this* round's data; the
                                    round's best replaces it only if it wins by the margin

The decision, both figures and why go on the round's parent run (tags ``tuner.job``,
``tuner.round``, ``tuner.decision``) and into the job's history (tuner.app.schedule.history).
A round that fails or is interrupted never moves the ``champion`` alias; moving it is
one call to the registry, so it moves whole or not at all.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna

from tuner.app.schedule.champion import decide
from tuner.app.schedule.confinement import check_overrides, project_config_dir
from tuner.app.schedule.environment import (
    ROUND_ENV,
    SCHEDULED_FOR_ENV,
    due_from_env,
    scoped_env,
)
from tuner.app.schedule.history import History, history_path
from tuner.app.schedule.jobs import Job, Schedule, load_schedule
from tuner.app.schedule.state import iso
from tuner.app.schedule.timetable import now, stamp
from tuner.config.compose import compose_config
from tuner.config.plan import SweepPlan, make_plan
from tuner.core.errors import ConfigError, Problem, SweepInterrupted, SweepStopped
from tuner.core.results import reason_of


def round_study(job: str, number: int) -> str:
    return f"{job}-r{number}"


def run_round(schedule_path: Path, name: str, say: Callable[[str], None],
              due: datetime | None = None) -> dict[str, Any]:
    """Run one round of job ``name`` now; its history record. Raises ConfigError (bad
    job, nothing written), AlreadyRunning (another round holds the lock), SweepStopped
    (too many failures) or an interruption, after recording the round."""
    from tuner.app.watch import sigterm_raises
    from tuner.study.exclusive import exclusive

    schedule = load_schedule(schedule_path)
    job = find_job(schedule, name)
    due = due or due_from_env() or now()
    config_dir = _checked_config_dir(schedule, job)
    with (sigterm_raises(), contextlib.chdir(schedule.project_dir),
          scoped_env(SCHEDULED_FOR_ENV, stamp(due))):
        probe = _plan(job, config_dir, 0)  # bad input is refused before the lock exists
        with exclusive(probe.cfg.storage, f"round-{name}", f"a round of job {name}"):
            history = History(history_path(schedule.path, name))
            for crashed in history.unfinished():
                _reap(history, crashed, probe, say)
            number = max(history.next_round(), _next_in_storage(probe, name))
            plan = _plan(job, config_dir, number)
            with scoped_env(ROUND_ENV, str(number)):
                return _train_round(job, plan, history, number, due, say)


def local_files(schedule: Schedule, job: Job) -> list[str]:
    """What of the job's records lives in files on the machine that runs a round (its
    study's storage, its MLflow store), as "what (where)"; empty when both are servers."""
    from tuner.study.storage import storage_file
    from tuner.tracking.server import is_server_uri

    config_dir = _checked_config_dir(schedule, job)
    with contextlib.chdir(schedule.project_dir):
        cfg = _plan(job, config_dir, 0).cfg
    found = []
    study_file = storage_file(cfg.storage)
    if study_file is not None:
        found.append(f"the study ({study_file})")
    if not is_server_uri(cfg.tracking.tracking_uri):
        found.append(f"MLflow ({cfg.tracking.tracking_uri})")
    return found


def _checked_config_dir(schedule: Schedule, job: Job) -> Path | None:
    """The job's config folder, inside the project, and its overrides checked against it
    (configs are code: README, scheduled jobs)."""
    config_dir = project_config_dir(job.config_dir, schedule.project_dir, schedule.where,
                                    f"jobs.{job.name}.config_dir")
    check_overrides(job.overrides, config_dir, schedule.where, f"jobs.{job.name}.overrides")
    return config_dir


def find_job(schedule: Schedule, name: str) -> Job:
    if name not in schedule.jobs:
        known = ", ".join(schedule.jobs) or "none"
        raise ConfigError(Problem(schedule.where, f"jobs.{name}", "no such job",
                                  f"jobs in the file: {known}"))
    return schedule.jobs[name]


def round_overrides(job: Job, number: int) -> list[str]:
    """The job's overrides, then the round's: its study, its budget, and no promotion by
    the sweep itself (the round decides, on this round's data). The rounds share one
    MLflow experiment, named after the job (a job may name another): one runs table,
    a parent run per round."""
    extra = [f"study_name={round_study(job.name, number)}",
             "tracking.register_champion=false"]
    if not any(o.lstrip("+").startswith("tracking.experiment=") for o in job.overrides):
        extra.append(f"tracking.experiment={job.name}")
    if job.trials is not None:
        extra.append(f"n_trials={job.trials}")
    if job.seconds is not None:
        extra.append(f"timeout={job.seconds}")
    return [*job.overrides, *extra]


def _plan(job: Job, config_dir: Path | None, number: int) -> SweepPlan:
    """Round ``number``'s plan (round 0: a probe that checks the job and finds its
    storage); overrides may read the round's number from ${oc.env:TUNER_ROUND}."""
    with scoped_env(ROUND_ENV, str(number)):
        return make_plan(compose_config(round_overrides(job, number), config_dir))


def _train_round(job: Job, plan: SweepPlan, history: History, number: int, due: datetime,
                 say: Callable[[str], None]) -> dict[str, Any]:
    from tuner.app.progress import PlainReporter
    from tuner.app.sweep import run_sweep

    entry: dict[str, Any] = {"round": number, "study": plan.study_name, "due": iso(due),
                             "started": iso(now()), "ended": None, "status": "running",
                             "warm_started": []}
    history.record(entry)
    say(f"round {number} of job {job.name}: study {plan.study_name}")

    def prepare(study: optuna.Study, tracker) -> None:
        _tag_parent(tracker, job.name, number)
        entry["warm_started"] = _warm_start(study, plan, history, job.warm_start)
        if entry["warm_started"]:
            say(f"warm start: {', '.join(entry['warm_started'])}")

    try:
        outcome = run_sweep(plan, PlainReporter(), prepare=prepare)
        counts = outcome.summary.counts
        entry["trials"] = {"complete": counts["COMPLETE"], "pruned": counts["PRUNED"],
                           "fail": counts["FAIL"]}
        entry["stopped"] = outcome.stop_reason  # "budget", "timeout" (the job's --time), ...
        best = outcome.summary.best
        if best is not None:
            entry["best"] = {"trial": best.number, "value": best.values[0],
                             "params": best.params}
        decision = decide(plan, job, outcome.study, best)
    except SweepStopped as error:
        _end(history, entry, "failed", f"the sweep stopped: {error}; the champion was not "
                                       "moved")
        raise
    except (KeyboardInterrupt, SweepInterrupted, SystemExit):
        _end(history, entry, "interrupted", "interrupted: the champion was not moved")
        raise
    except Exception as error:
        _end(history, entry, "failed", f"{reason_of(error)}; the champion was not moved")
        raise
    entry.update(decision.record())
    _end(history, entry, "done", decision.why)
    say(f"round {number}: {decision.describe()}")
    return entry


def _end(history: History, entry: dict[str, Any], status: str, why: str) -> None:
    entry.update(status=status, ended=iso(now()))
    entry.setdefault("why", why)
    history.record(entry)


def _warm_start(study: optuna.Study, plan: SweepPlan, history: History, k: int) -> list[str]:
    """Enqueue the best ``k`` params of the earlier rounds' studies (a study gone from
    the storage is skipped)."""
    from tuner.core.upstream import storage_of
    from tuner.study.storage import find_study_id
    from tuner.study.warm_start import enqueue_best

    storage = storage_of(study)
    earlier = [optuna.load_study(study_name=name, storage=storage)
               for name in history.finished_studies()
               if name != study.study_name and find_study_id(storage, name) is not None]
    return enqueue_best(study, earlier, k, plan.space)


def _tag_parent(tracker, job: str, number: int) -> None:
    """The round's parent run says whose round it is: the MLflow UI finds a job's rounds
    by ``tags.tuner.job`` and orders them by ``tags.tuner.round``."""
    from tuner.tracking import tags

    tracker.client.set_tag(tracker.parent_run_id, tags.JOB, job)
    tracker.client.set_tag(tracker.parent_run_id, tags.ROUND, str(number))


def _reap(history: History, entry: dict[str, Any], plan: SweepPlan,
          say: Callable[[str], None]) -> None:
    """A round recorded as running while nobody holds the job's lock was killed: its
    trials still RUNNING are reaped (FAIL, their runs KILLED), its parent run KILLED."""
    from tuner.study.budget import reap_stale
    from tuner.study.storage import find_study_id, open_storage
    from tuner.tracking.runs import Tracker

    storage = open_storage(plan.cfg.storage)
    reaped = 0
    if find_study_id(storage, entry["study"]) is not None:
        study = optuna.load_study(study_name=entry["study"], storage=storage)
        tracker = Tracker(plan.cfg.tracking, entry["study"])
        with contextlib.suppress(ConfigError):  # no parent run: nothing was recorded
            tracker.join(study)
        _, reaped = reap_stale(study, storage, tracker.end_abandoned,
                               everyone_gone="the round was killed while it trained")
        if tracker.parent_run_id is not None:
            tracker.close("KILLED")
    entry.update(status="crashed", ended=entry.get("ended"),
                 why=f"the round's process ended without recording its end (killed?); "
                     f"reaped by the next round: {reaped} RUNNING trial(s) marked FAIL")
    history.record(entry)
    say(f"round {entry['round']} of this job had been killed: {reaped} trial(s) reaped")


def _next_in_storage(plan: SweepPlan, job: str) -> int:
    """One more than the highest round whose study exists (a history file lost or
    moved must not make a round reuse an existing study)."""
    from tuner.study.storage import journal_path, open_storage

    path = journal_path(plan.cfg.storage)
    if path is not None and not path.exists():
        return 1
    pattern = re.compile(rf"^{re.escape(job)}-r(\d+)$")
    try:
        names = optuna.study.get_all_study_names(open_storage(plan.cfg.storage))
    except Exception:  # an SQLite file not there yet, a database without tables
        return 1
    return max((int(m.group(1)) for n in names if (m := pattern.match(n))), default=0) + 1

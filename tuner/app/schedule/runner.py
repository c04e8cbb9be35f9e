"""The scheduler loop behind `tuner schedule run`: it starts each due job as a
subprocess `tuner schedule round NAME` (tuner.app.schedule.rounds), one at a time, in the
project folder, with its output in a log file per run, and notes each run's start, end
and exit status in the state file.

- A job due while it is still running (or still waiting for another job to finish) is
  skipped, with a line saying so; due times missed while no scheduler ran are caught up
  with one run.
- The schedule file is read again at every check, so edits and `tuner schedule add`
  take effect without a restart; each job's config folder and overrides are checked
  again just before it starts (:mod:`.confinement`), and a job that fails the check is
  not run: its run is recorded as refused, with the reason.
- SIGTERM or Ctrl-C stops the loop: a running job gets one SIGTERM (tuner marks its
  running trials FAIL, "interrupted", and the next run resumes the study), and is killed
  after STOP_GRACE_S if it has not ended by then.
- One scheduler per schedule file: a second one is refused (a lock file next to it).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from tuner.app.schedule.confinement import check_overrides, project_config_dir
from tuner.app.schedule.environment import JOB_ENV, SCHEDULED_FOR_ENV, round_command
from tuner.app.schedule.files import ScheduleLock
from tuner.app.schedule.jobs import Job, Schedule, load_schedule
from tuner.app.schedule.state import State, iso, parse_time, state_path
from tuner.app.schedule.timetable import (
    check_cron,
    first_due_from,
    latest_due,
    minute_of,
    next_due,
    now,
    stamp,
)
from tuner.config.locate import display_path
from tuner.core.errors import ConfigError

LOG_DIR = "tuner-schedule-logs"
STOP_GRACE_S = 120.0  # time a stopped job has to end its trials before it is killed
POLL_S = 1.0


def pending_due(job: Job, entry: dict[str, Any], moment: datetime) -> datetime:
    """The first due minute of ``job`` not yet handled (at or before ``moment``: due)."""
    start = job.added or parse_time(entry.get("first_seen")) or moment
    handled = parse_time(entry.get("handled_due"))
    if handled is not None and handled >= minute_of(start):
        return next_due(job.cron, handled)
    return first_due_from(job.cron, start)


@dataclass
class RunningJob:
    job: Job
    due: datetime
    started: datetime
    log: Path
    log_file: IO[str]
    process: subprocess.Popen
    stopped: bool = False


class Scheduler:
    def __init__(self, schedule_path: Path, say: Callable[[str], None] | None = None):
        self.path = schedule_path
        self.state = State(state_path(schedule_path))
        self.schedule: Schedule | None = None
        self.say_line = say or (lambda line: print(line, flush=True))
        self.running: RunningJob | None = None
        self.queue: list[tuple[Job, datetime]] = []
        self.stopping = False
        self.unsuccessful = 0  # runs that did not end with exit 0 (for --once's exit code)
        self._reported: set[str] = set()  # problems already said, not repeated each second

    def say(self, message: str) -> None:
        self.say_line(f"{now():%Y-%m-%d %H:%M:%S} {message}")

    # -- the loop -----------------------------------------------------------------------

    def run(self, once: bool) -> int:
        """Loop until stopped (or, with ``once``, run what is due now, then return)."""
        with self._lock():
            previous = {s: signal.signal(s, self._stop) for s in (signal.SIGTERM,
                                                                  signal.SIGINT)}
            try:
                self._mark_lost_runs()
                if once:
                    return self._run_once()
                self.say(f"scheduler started for {display_path(self.path)} (Ctrl-C to stop)")
                while not self.stopping:
                    self._tick()
                    time.sleep(POLL_S)
                self._end_running()
                self.say("scheduler stopped")
                return 0
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    def _run_once(self) -> int:
        self._collect_due(now())
        if not self.queue:
            self.say("no job is due")
        while self.queue and not self.stopping:
            self._start(*self.queue.pop(0))
            while self.running is not None and self.running.process.poll() is None:
                if self.stopping:
                    self._end_running()
                    break
                time.sleep(POLL_S / 4)
            if self.running is not None:
                self._finish()
        return 1 if self.unsuccessful or self.stopping else 0

    def _tick(self) -> None:
        self._collect_due(now())
        if self.running is not None and self.running.process.poll() is not None:
            self._finish()
        if self.running is None and self.queue:
            self._start(*self.queue.pop(0))

    def _stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    # -- what is due ----------------------------------------------------------------------

    def _reload(self) -> Schedule | None:
        """The schedule as the file says now; a broken edit keeps the last good one."""
        try:
            self.schedule = load_schedule(self.path)
        except ConfigError as error:
            self._report_once(f"schedule file not read, keeping the jobs read before: {error}")
        return self.schedule

    def _collect_due(self, moment: datetime) -> None:
        schedule = self._reload()
        if schedule is None:
            return
        changed = False
        for job in schedule.jobs.values():
            entry = self.state.job(job.name)
            if job.added is None and "first_seen" not in entry:
                entry["first_seen"] = iso(moment)  # a job written by hand: due from now
                changed = True
            try:
                check_cron(job.cron, schedule.where, f"jobs.{job.name}.cron")
            except ConfigError as error:
                self._report_once(f"job {job.name} not scheduled: {error}")
                continue
            if pending_due(job, entry, moment) > moment:
                continue
            due = latest_due(job.cron, moment)  # missed minutes: one catch-up run
            entry["handled_due"] = iso(due)
            changed = True
            if self.running is not None and self.running.job.name == job.name:
                self.say(f"skipped {job.name} due {due:%H:%M}: its run started at "
                         f"{self.running.started:%H:%M:%S} is still running")
            elif any(queued.name == job.name for queued, _ in self.queue):
                self.say(f"skipped {job.name} due {due:%H:%M}: already waiting for its turn")
            else:
                self.queue.append((job, due))
        if changed:
            self.state.save()

    def _report_once(self, message: str) -> None:
        if message not in self._reported:
            self._reported.add(message)
            self.say(message)

    # -- one run --------------------------------------------------------------------------

    def _start(self, job: Job, due: datetime) -> None:
        assert self.schedule is not None
        project = self.schedule.project_dir
        try:
            # Checked again here: the file may have been edited since `tuner schedule add`.
            config_dir = project_config_dir(job.config_dir, project, self.schedule.where,
                                            f"jobs.{job.name}.config_dir")
            check_overrides(job.overrides, config_dir, self.schedule.where,
                            f"jobs.{job.name}.overrides")
        except ConfigError as error:
            self._record(job.name, {"due": iso(due), "started": None, "ended": iso(now()),
                                    "status": "refused", "exit_code": None,
                                    "reason": str(error), "log": None})
            self.unsuccessful += 1
            self.say(f"refused {job.name} due {due:%H:%M}, not run: {error}")
            return
        started = now()
        log = project / LOG_DIR / job.name / f"{started:%Y%m%d-%H%M%S}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        command = round_command(job.name, self.path)
        log_file = log.open("a", encoding="utf-8")
        log_file.write(f"# job {job.name} due {iso(due)}, started {iso(started)}\n"
                       f"# {SCHEDULED_FOR_ENV}={stamp(due)} {shlex.join(command)}\n")
        log_file.flush()
        env = {**os.environ, SCHEDULED_FOR_ENV: stamp(due), JOB_ENV: job.name,
               "PYTHONUNBUFFERED": "1"}
        # Its own session: Ctrl-C at the terminal reaches the scheduler only, which then
        # sends the job one SIGTERM (two signals would end tuner at once, unrecorded).
        process = subprocess.Popen(command, cwd=project, env=env, stdin=subprocess.DEVNULL,
                                   stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        self.running = RunningJob(job, due, started, log, log_file, process)
        self.state.job(job.name)["running"] = {"due": iso(due), "started": iso(started),
                                               "pid": process.pid, "log": str(log)}
        self.state.save()
        self.say(f"started {job.name} due {due:%H:%M} (pid {process.pid}): "
                 f"{shlex.join(command[2:])}; log {display_path(log)}")

    def _end_running(self) -> None:
        running = self.running
        if running is None:
            return
        running.stopped = True
        if running.process.poll() is None:
            self.say(f"stopping {running.job.name} (SIGTERM; its running trials end FAIL "
                     "and the next run resumes the study)")
            running.process.terminate()
            try:
                running.process.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.say(f"{running.job.name} did not end in {STOP_GRACE_S:.0f} s: killed")
                os.killpg(running.process.pid, signal.SIGKILL)
                running.process.wait()
        self._finish()

    def _finish(self) -> None:
        running = self.running
        assert running is not None
        self.running = None
        running.log_file.close()
        code = running.process.returncode
        status = "interrupted" if running.stopped else ("ok" if code == 0 else "failed")
        if code != 0:
            self.unsuccessful += 1
        self.state.job(running.job.name).pop("running", None)
        self._record(running.job.name, {
            "due": iso(running.due), "started": iso(running.started), "ended": iso(now()),
            "status": status, "exit_code": code, "reason": None, "log": str(running.log)})
        self.say(f"{running.job.name} ended: exit {code} ({status}); log "
                 f"{display_path(running.log)}")

    def _record(self, name: str, last_run: dict[str, Any]) -> None:
        self.state.job(name)["last_run"] = last_run
        self.state.save()

    def _mark_lost_runs(self) -> None:
        """Runs a scheduler started and never saw end (it was killed meanwhile)."""
        for name, entry in self.state.jobs.items():
            running = entry.pop("running", None)
            if running:
                self._record(name, {**running, "ended": None, "status": "lost",
                                    "exit_code": None, "reason": "the scheduler stopped "
                                    f"while it ran (pid {running.get('pid')}); its end was "
                                    "not seen", "log": running.get("log")})

    def _lock(self):
        return ScheduleLock(self.path.with_name(self.path.stem + ".lock"), self.path)

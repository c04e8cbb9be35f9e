"""`tuner schedule export`: a job as a crontab line, a systemd service and timer, or a
Kubernetes CronJob, each running one round of the job (`tuner schedule round NAME`).

The exported timetable is the job's own cron expression. cron and a Kubernetes CronJob
read it as it is; systemd reads calendar events, so the expression is translated field
by field (croniter expands each field into its values). One difference cannot be
translated: cron runs a job whose day-of-month *and* day-of-week are both restricted on
either day, a systemd timer only on days that match both; such a job is refused for
systemd with the reason.

No overlap: a round takes the job's lock (tuner.study.exclusive) whoever starts it, so
a round started by cron while the previous one still runs is refused; the CronJob also
says ``concurrencyPolicy: Forbid``.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import yaml
from croniter import croniter

from tuner.app.schedule.environment import round_command
from tuner.app.schedule.jobs import Job, Schedule
from tuner.core.errors import ConfigError, Problem

FORMATS = ("crontab", "systemd", "kubernetes")
MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
          "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
          "@hourly": "0 * * * *"}
WEEKDAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")
LOG_DIR = "tuner-schedule-logs"


@dataclass(frozen=True)
class Exported:
    """The files of one export: name -> text (one file for crontab and kubernetes)."""

    files: dict[str, str]


def export(job: Job, schedule: Schedule, fmt: str, image: str | None = None,
           workdir: str = "/project") -> Exported:
    """The job in ``fmt``; ConfigError when it cannot be said in that format."""
    if fmt == "crontab":
        return Exported({f"{job.name}.crontab": crontab_line(job, schedule) + "\n"})
    if fmt == "systemd":
        return systemd_units(job, schedule)
    if fmt == "kubernetes":
        if not image:
            raise ConfigError(Problem("command line", "--image", "is required for "
                                      "--format kubernetes", "give the image that holds "
                                      "your project and tuner, e.g. --image "
                                      "registry.example.com/team/project:1.4"))
        return Exported({f"{job.name}-cronjob.yaml": cronjob(job, schedule, image, workdir)})
    raise ConfigError(Problem("command line", "--format", f"'{fmt}' is not a format",
                              f"use one of: {', '.join(FORMATS)}"))


def crontab_line(job: Job, schedule: Schedule) -> str:
    """One line for `crontab -e`: cron's own reading of the expression, in the project
    folder, output appended to the job's log folder (cron mails nothing then)."""
    project = schedule.project_dir
    log = project / LOG_DIR / job.name / "cron.log"
    run = shlex.join(round_command(job.name, schedule.path))
    command = (f"cd {shlex.quote(str(project))} && mkdir -p {shlex.quote(str(log.parent))} "
               f"&& {run} >> {shlex.quote(str(log))} 2>&1")
    # cron gives % a meaning of its own (newline) in the command field.
    return f"{_expression(job)} {command.replace('%', chr(92) + '%')}"


def systemd_units(job: Job, schedule: Schedule) -> Exported:
    """``tuner-<job>.service`` (one round, oneshot) and ``tuner-<job>.timer``."""
    unit = f"tuner-{job.name}"
    calendar = on_calendar(_expression(job), schedule.where, f"jobs.{job.name}.cron")
    # systemd reads % as the start of a specifier: %% is a plain %.
    command = shlex.join(round_command(job.name, schedule.path)).replace("%", "%%")
    service = (
        "[Unit]\n"
        f"Description=tuner schedule: one round of job {job.name}\n"
        "After=network-online.target\n\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"WorkingDirectory={str(schedule.project_dir).replace('%', '%%')}\n"
        f"ExecStart={command}\n"
        # SIGTERM first: the round marks its running trials FAIL ("interrupted").
        "KillSignal=SIGTERM\n"
        "TimeoutStopSec=180\n")
    timer = (
        "[Unit]\n"
        f"Description=tuner schedule: job {job.name} on its timetable ({job.cron})\n\n"
        "[Timer]\n"
        f"OnCalendar={calendar}\n"
        # A round missed while the machine was off runs once when it is back, as
        # `tuner schedule run` catches up missed runs once.
        "Persistent=true\n"
        f"Unit={unit}.service\n\n"
        "[Install]\n"
        "WantedBy=timers.target\n")
    return Exported({f"{unit}.service": service, f"{unit}.timer": timer})


def cronjob(job: Job, schedule: Schedule, image: str, workdir: str) -> str:
    """A Kubernetes CronJob whose pod runs one round in ``workdir`` of ``image``."""
    name = f"tuner-{job.name.lower().replace('_', '-')}"[:52]  # CronJob names: DNS, <= 52
    schedule_file = f"{workdir.rstrip('/')}/{schedule.path.name}"
    spec: dict = {
        "schedule": _expression(job),
        "concurrencyPolicy": "Forbid",  # a round still running: the next is not started
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 3,
        "jobTemplate": {"spec": {
            "backoffLimit": 0,  # a failed round is recorded; the next one reaps it
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "tuner",
                                        "tuner.job": job.name}},
                "spec": {"restartPolicy": "Never", "containers": [{
                    "name": "round", "image": image, "workingDir": workdir,
                    "command": ["tuner", "schedule", "round", job.name, "--file",
                                schedule_file]}]}}}},
    }
    zone = host_time_zone()
    if zone is not None:
        spec["timeZone"] = zone  # cron reads the host's local time; so does this CronJob
    document = {"apiVersion": "batch/v1", "kind": "CronJob",
                "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "tuner",
                                                      "tuner.job": job.name}},
                "spec": spec}
    return yaml.safe_dump(document, sort_keys=False)


def host_time_zone() -> str | None:
    """The host's IANA time zone (TZ, /etc/timezone or /etc/localtime's target)."""
    zone = os.environ.get("TZ", "").lstrip(":")
    if (zone and "/" in zone) or zone in ("UTC", "Etc/UTC"):
        return zone
    timezone_file = Path("/etc/timezone")
    named = timezone_file.read_text().strip() if timezone_file.is_file() else ""
    if named:
        return named
    localtime = Path("/etc/localtime")
    if localtime.is_symlink():
        target = str(localtime.resolve())
        if "zoneinfo/" in target:
            return target.split("zoneinfo/", 1)[1]
    return None


def _expression(job: Job) -> str:
    text = job.cron.strip()
    return MACROS.get(text, text)


def on_calendar(expression: str, where: str, key: str) -> str:
    """The systemd calendar event matching the five-field cron ``expression``."""
    expression = MACROS.get(expression.strip(), expression.strip())
    try:
        (minutes, hours, days, months, weekdays), special = croniter.expand(expression)
    except Exception as error:
        raise ConfigError(Problem(where, key, f"'{expression}' is not a cron expression: "
                                  f"{error}", "fix the cron expression")) from error
    if special or any(isinstance(v, str) and v != "*"
                      for field in (minutes, hours, days, months, weekdays) for v in field):
        raise ConfigError(Problem(where, key, f"'{expression}' uses a cron feature that "
                                  "systemd timers have no equivalent for (L, W or #)",
                                  "export it as a crontab line or a Kubernetes CronJob"))
    if days != ["*"] and weekdays != ["*"]:
        raise ConfigError(Problem(
            where, key, f"'{expression}' restricts both the day of the month and the day "
            "of the week: cron runs it on either day, a systemd timer only on days that "
            "are both", "export it as a crontab line, or restrict only one of the two"))
    day_names = "" if weekdays == ["*"] else ",".join(
        WEEKDAYS[int(d) % 7] for d in sorted({int(d) % 7 for d in weekdays})) + " "
    return (f"{day_names}*-{_values(months)}-{_values(days)} "
            f"{_values(hours)}:{_values(minutes)}:00")


def _values(field: list) -> str:
    return "*" if field == ["*"] else ",".join(f"{int(v):02d}" for v in field)

"""When a job is due: standard five-field cron expressions (or @daily, @hourly, ...),
read by croniter in the host's local time zone, as cron itself reads them.

A job is due at each minute its expression matches, from the minute it was added. A
scheduler that was not running at such a minute runs the job once when it next looks
(missed runs are caught up once, not once per missed minute).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from croniter import croniter

from tuner.core.errors import ConfigError, Problem

MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
CRON_HELP = ("five fields: minute hour day-of-month month day-of-week, e.g. '0 3 * * *' "
             "(03:00 every day) or '*/30 * * * *'; or one of " + ", ".join(MACROS))


def now() -> datetime:
    return datetime.now().astimezone()


def check_cron(expression: str, where: str, key: str) -> None:
    """Refuse what cron would not run: croniter also takes a sixth (seconds) field,
    which a minute-by-minute scheduler cannot honour."""
    text = expression.strip()
    fields = text.split()
    if not (text in MACROS or (len(fields) == 5 and croniter.is_valid(text))):
        raise ConfigError(Problem(where, key, f"'{expression}' is not a cron expression",
                                  f"write {CRON_HELP}"))


def minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def next_due(expression: str, after: datetime) -> datetime:
    """The first minute matching ``expression`` strictly after ``after``."""
    return croniter(expression, after).get_next(datetime)


def first_due_from(expression: str, moment: datetime) -> datetime:
    """The first matching minute at or after the minute holding ``moment``."""
    return next_due(expression, minute_of(moment) - timedelta(seconds=1))


def latest_due(expression: str, moment: datetime) -> datetime:
    """The last matching minute at or before the minute holding ``moment``."""
    return croniter(expression, minute_of(moment) + timedelta(seconds=1)).get_prev(datetime)


def stamp(moment: datetime) -> str:
    """A due time as it appears in study names and log files: 20261124-0300."""
    return moment.strftime("%Y%m%d-%H%M")

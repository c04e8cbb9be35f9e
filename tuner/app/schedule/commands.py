"""`tuner schedule add | list | remove | run` (and, from tuner.app.schedule.round_commands,
`round | history | export`): argument parsing and printing only."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from tuner.app.schedule.jobs import (
    SCHEDULE_FILE,
    Job,
    check_name,
    check_round_overrides,
    load_schedule,
)
from tuner.app.schedule.round_commands import (
    add_budget_options,
    add_round_actions,
    budget_settings,
)
from tuner.core.errors import ConfigError, Problem

SCHEDULE_HELP = ("Re-tune on a timetable: jobs that run a round (a study of its own, "
                 "warm-started, with a champion that must win on the round's data) when "
                 "their cron matches.")

SCHEDULE_EPILOG = """\
examples:
  tuner schedule add nightly --cron "0 2 * * *" --trials 40 --time 2h -- model=cnn search=cnn
  tuner schedule add weekly --cron @weekly --config-dir conf --margin 0.005 -- model=my_model
  tuner schedule list
  tuner schedule run                # the scheduler, in the foreground (systemd, containers)
  tuner schedule run --once         # run what is due now, then exit
  tuner schedule round nightly      # one round now (what every timetable runs)
  tuner schedule history nightly    # the rounds: trials, best, champion before/after, why
  tuner schedule export nightly --format crontab|systemd|kubernetes
  tuner schedule remove nightly

Jobs live in ./tuner-schedule.yaml (plain YAML; edit it by hand if you like) and run in
its folder, the project. Each run of a job is a round with a study of its own,
<job>-r<N>: it first tries the best params of earlier rounds, then searches, then
measures the current champion (the registered model named after the job) on this
round's validation data, and promotes the round's best only if it beats that figure by
the job's margin. Overrides may use ${oc.env:TUNER_ROUND} (the round's number) and
${oc.env:TUNER_SCHEDULED_FOR} (the due minute, e.g. 20261124-0300).

Configs are code (`_target_` imports what it names), so a job uses only tuner's built-in
conf and config folders inside the project, checked when it is added and before each run."""

FILE_HELP = (f"the schedule file (default: ./{SCHEDULE_FILE}); its folder is the project, "
             "where jobs run and their config folders must be")

ADD_HELP = ("Add a job: checked as `tuner sweep` would check it (nothing is written when "
            "anything is wrong), then saved to the schedule file.")
ADD_EPILOG = """\
Everything after -- goes to the round's sweep, as to `tuner sweep`. A round's budget is
--trials and/or --time (no trial starts after the time; none is cut short). Refused in a
job's overrides: study_name (rounds name their studies), hydra.* settings, _target_ keys
and config options written as paths, which could reach configs outside the project."""

RUN_HELP = ("Run the scheduler in the foreground: each due job as a round (`tuner schedule "
            "round`), one at a time; Ctrl-C or SIGTERM stops it (and a running round, "
            "cleanly).")
RUN_EPILOG = """\
Each run's output goes to tuner-schedule-logs/JOB/STARTED.log, and its start, end and exit
status to tuner-schedule.state.json (both next to the schedule file). A job due while its
previous run is still going is skipped, with a line saying so. Times are the host's
local time, as cron reads them. A due time missed while no scheduler ran is caught up
with one run when the scheduler next looks.

--once runs the jobs due at this minute or missed since their last run (a job is due
from the minute it was added), then exits: 0 when every run ended with exit 0, 1 when one
failed or was refused."""


class _OverridesAfterDashes(argparse.ArgumentParser):
    """`add NAME --cron EXPR -- OVERRIDES`: argparse matches the (possibly empty) list of
    overrides together with NAME, before the options that follow it, and then refuses the
    words after `--`; so they are split off here."""

    def parse_known_args(self, args=None, namespace=None):
        words = list(args) if args is not None else []
        after: list[str] = []
        if "--" in words:
            cut = words.index("--")
            words, after = words[:cut], words[cut + 1:]
        namespace, extras = super().parse_known_args(words, namespace)
        namespace.overrides = [*getattr(namespace, "overrides", []), *after]
        return namespace, extras


def add_schedule_command(commands: argparse._SubParsersAction) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    schedule = commands.add_parser("schedule", help=SCHEDULE_HELP, description=SCHEDULE_HELP,
                                   epilog=SCHEDULE_EPILOG, formatter_class=raw)
    actions = schedule.add_subparsers(dest="schedule_action", metavar="ACTION", required=True,
                                      parser_class=_OverridesAfterDashes)

    def action(name: str, help_text: str, epilog: str = "") -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help_text, description=help_text, epilog=epilog,
                                 formatter_class=raw)
        sub.add_argument("--file", default=SCHEDULE_FILE, metavar="FILE", help=FILE_HELP)
        return sub

    add = action("add", ADD_HELP, ADD_EPILOG)
    add.add_argument("name", metavar="NAME", help="the job's name: a letter, then letters, "
                                                  "digits, '_' or '-'; unique in the file")
    add.add_argument("--cron", required=True, metavar="EXPR",
                     help="when to run, e.g. '0 3 * * *' (03:00 daily) or @hourly")
    add.add_argument("--config-dir", metavar="DIR",
                     help="a folder of your own config groups inside the project")
    add_budget_options(add)
    add.add_argument("overrides", nargs="*", metavar="OVERRIDE",
                     help="the `tuner sweep` overrides of each round, after --")
    add.set_defaults(func=cmd_add)

    listing = action("list", "List the jobs: cron, overrides, next run, last run and how "
                             "it ended.")
    listing.set_defaults(func=cmd_list)

    remove = action("remove", "Remove a job from the schedule file (its studies, records "
                              "and logs stay).")
    remove.add_argument("name", metavar="NAME", help="the job to remove")
    remove.set_defaults(func=cmd_remove)

    run = action("run", RUN_HELP, RUN_EPILOG)
    run.add_argument("--once", action="store_true",
                     help="run the jobs due now (or missed), one after another, then exit")
    run.set_defaults(func=cmd_run)

    add_round_actions(action)


def cmd_add(args: argparse.Namespace) -> int:
    from tuner.app.schedule.confinement import check_overrides, project_config_dir
    from tuner.app.schedule.timetable import check_cron, first_due_from, now

    path = Path(args.file)
    if not path.resolve().parent.is_dir():
        raise ConfigError(Problem("command line", "--file", f"{path.resolve().parent} is not "
                                  "a directory", "create the project folder first"))
    schedule = load_schedule(path)
    check_name(args.name, "command line", "NAME")
    if args.name in schedule.jobs:
        raise ConfigError(Problem(schedule.where, f"jobs.{args.name}", "already exists",
                                  "choose another name, or `tuner schedule remove "
                                  f"{args.name}` first"))
    check_cron(args.cron, "command line", "--cron")
    settings = budget_settings(args)
    check_round_overrides(args.overrides, "command line", "OVERRIDE")
    project = schedule.project_dir
    config_dir = project_config_dir(args.config_dir, project, "command line", "--config-dir",
                                    base=Path.cwd())
    check_overrides(args.overrides, config_dir, "command line", "OVERRIDE")
    added = now()
    first = first_due_from(args.cron.strip(), added)
    job = Job(args.name, args.cron.strip(), tuple(args.overrides),
              None if config_dir is None else config_dir.relative_to(project).as_posix(),
              added, **settings)
    _check_as_round(project, config_dir, job, first)
    schedule.jobs[args.name] = job
    schedule.save()
    print(f"added {args.name} to {schedule.where}: next run {first:%Y-%m-%d %H:%M %Z}; "
          "`tuner schedule run` runs it")
    return 0


def _check_as_round(project: Path, config_dir: Path | None, job: Job, due) -> None:
    """Compose and plan exactly as the job's first round would in the project folder at
    its first due time, so a job that would fail its first round is refused now."""
    from tuner.app.schedule.environment import ROUND_ENV, SCHEDULED_FOR_ENV, scoped_env
    from tuner.app.schedule.rounds import round_overrides
    from tuner.app.schedule.timetable import stamp
    from tuner.config.compose import compose_config
    from tuner.config.plan import make_plan

    with (contextlib.chdir(project), scoped_env(SCHEDULED_FOR_ENV, stamp(due)),
          scoped_env(ROUND_ENV, "1")):
        make_plan(compose_config(round_overrides(job, 1), config_dir))


def cmd_list(args: argparse.Namespace) -> int:
    import shlex

    from tuner.app.schedule.runner import pending_due
    from tuner.app.schedule.state import State, state_path
    from tuner.app.schedule.timetable import now

    schedule = load_schedule(Path(args.file))
    if not schedule.jobs:
        print(f"no jobs in {schedule.where}; add one with `tuner schedule add`")
        return 0
    state = State(state_path(schedule.path))
    moment = now()
    for job in schedule.jobs.values():
        entry = state.jobs.get(job.name, {})
        print(f"{job.name}: cron '{job.cron}'"
              + (f", config_dir {job.config_dir}" if job.config_dir else ""))
        print(f"  overrides: {shlex.join(job.overrides) or '(none)'}")
        print(f"  rounds:    {_round_settings(job)}")
        print(f"  next run:  {_next_run(job, entry, moment, pending_due)}")
        running = entry.get("running")
        if running:
            print(f"  running:   since {running['started']} (pid {running['pid']})")
        print(f"  last run:  {_last_run(entry.get('last_run'))}")
    return 0


def _round_settings(job: Job) -> str:
    budget = [f"{job.trials} trials" if job.trials is not None else "n_trials of the config"]
    if job.seconds is not None:
        budget.append(f"at most {job.seconds:g} s")
    return (f"{', '.join(budget)}; warm start from the best {job.warm_start}; margin "
            f"{job.margin:g}; history: tuner schedule history {job.name}")


def _next_run(job: Job, entry: dict, moment, pending_due) -> str:
    from tuner.app.schedule.timetable import check_cron

    try:
        check_cron(job.cron, "", "")
    except ConfigError:
        return "never: the cron expression is not valid"
    due = pending_due(job, entry, moment)
    if due <= moment:
        return f"now (due since {due:%Y-%m-%d %H:%M %Z})"
    return f"{due:%Y-%m-%d %H:%M %Z}"


def _last_run(last: dict | None) -> str:
    if not last:
        return "never"
    if last["status"] == "refused":
        reason = last["reason"].splitlines()[0]
        return f"refused at {last['ended']} (due {last['due']}): {reason}"
    end = last.get("ended") or "?"
    return (f"{last['started']} to {end}: {last['status']}, exit {last['exit_code']}; "
            f"log {last.get('log')}")


def cmd_remove(args: argparse.Namespace) -> int:
    schedule = load_schedule(Path(args.file))
    if args.name not in schedule.jobs:
        known = ", ".join(schedule.jobs) or "none"
        raise ConfigError(Problem(schedule.where, f"jobs.{args.name}", "no such job",
                                  f"jobs in the file: {known}"))
    del schedule.jobs[args.name]
    schedule.save()
    print(f"removed {args.name} from {schedule.where}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import sys

    from tuner.app.schedule.files import SchedulerBusy
    from tuner.app.schedule.runner import Scheduler

    path = Path(args.file)
    if not path.is_file():
        raise ConfigError(Problem("command line", "--file", f"there is no schedule file "
                                  f"{path}", "add a job first: tuner schedule add NAME "
                                  "--cron EXPR -- OVERRIDES"))
    load_schedule(path)  # a broken file is refused before the loop starts
    try:
        return Scheduler(path).run(once=args.once)
    except SchedulerBusy as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

"""`tuner schedule round | history | export`: a job's rounds, run, shown and exported.

Argument parsing and printing only: a round is tuner.app.schedule.rounds, the history
tuner.app.schedule.history, the exports tuner.app.schedule.export.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from tuner.app.schedule.jobs import Job, Schedule, check_round_setting, load_schedule
from tuner.core.errors import ConfigError, Problem

ROUND_HELP = ("Run one round of a job now: a study of its own (<job>-r<N>), warm-started "
              "from earlier rounds, and the champion replaced only if the round's best "
              "beats it on this round's data.")
ROUND_EPILOG = """\
This is what `tuner schedule run` starts when a job is due, and what the exported
crontab line, systemd timer and Kubernetes CronJob run. Two rounds of one job never
overlap, across machines too: a second one is refused (exit 1) while the first runs.
Exit codes: 0 the round ended (whatever it decided about the champion); 1 refused
because a round runs, or the sweep stopped on failures; 2 bad input; 130 interrupted."""

HISTORY_HELP = "Show a job's rounds: when, trials, best, champion before and after, and why."

EXPORT_HELP = ("Write a job as a crontab line, a systemd service and timer, or a Kubernetes "
               "CronJob, each running one round (`tuner schedule round NAME`).")
EXPORT_EPILOG = """\
examples:
  tuner schedule export nightly --format crontab >> my.crontab      # then: crontab my.crontab
  tuner schedule export nightly --format systemd --out ~/.config/systemd/user
  tuner schedule export nightly --format kubernetes --image registry/team/project:1.4

The Kubernetes CronJob runs the round in --workdir of --image, which must hold the
project (the schedule file, its configs) and tuner; give it storage=postgres and
tracking=server in the job's overrides, since a pod's own files do not outlive it."""

DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def add_round_actions(action) -> None:
    """Register round, history and export (``action`` makes one sub-parser)."""
    round_parser = action("round", ROUND_HELP, ROUND_EPILOG)
    round_parser.add_argument("name", metavar="NAME", help="the job")
    round_parser.set_defaults(func=cmd_round)

    history = action("history", HISTORY_HELP)
    history.add_argument("name", metavar="NAME", help="the job")
    history.add_argument("--json", action="store_true", help="print the records as JSON")
    history.set_defaults(func=cmd_history)

    export = action("export", EXPORT_HELP, EXPORT_EPILOG)
    export.add_argument("name", metavar="NAME", help="the job")
    export.add_argument("--format", required=True, choices=("crontab", "systemd",
                                                              "kubernetes"))
    export.add_argument("--out", metavar="DIR", help="write the file(s) into DIR (default: "
                                                     "print them)")
    export.add_argument("--image", help="kubernetes: the image holding the project and tuner")
    export.add_argument("--workdir", default="/project",
                        help="kubernetes: the project's folder in the image (default: "
                             "/project)")
    export.set_defaults(func=cmd_export)


def add_budget_options(add: argparse.ArgumentParser) -> None:
    add.add_argument("--trials", metavar="N", help="a round's budget in trials (default: "
                                                   "the config's n_trials)")
    add.add_argument("--time", metavar="DURATION",
                     help="a round's budget in wall time, e.g. 3600, 90m or 2h: no trial "
                          "starts after it, none is cut short")
    add.add_argument("--warm-start", metavar="K", default="3",
                     help="a round first tries the best K params of earlier rounds "
                          "(default: 3; 0: none)")
    add.add_argument("--margin", metavar="M", default="0",
                     help="the round's best replaces the champion only if it beats it, on "
                          "the round's data, by more than M (default: 0)")


def budget_settings(args: argparse.Namespace) -> dict:
    """The round settings given on the command line, each checked as the schedule file's
    are (tuner.app.schedule.jobs.check_round_setting); ConfigError names the flag."""
    settings: dict = {}
    if args.trials is not None:
        settings["trials"] = _setting("trials", args.trials, "--trials", int)
    if args.time is not None:
        match = DURATION.match(args.time)
        if match is None:
            raise ConfigError(Problem("command line", "--time", f"'{args.time}' is not a "
                                      "duration", "write seconds (3600) or a number with s, "
                                      "m, h or d (90m, 2h)"))
        seconds = float(match.group(1)) * UNIT_SECONDS[match.group(2)]
        check_round_setting("seconds", seconds, "command line", "--time", "give a positive "
                            "duration, e.g. --time 90m")
        settings["seconds"] = int(seconds) if seconds == int(seconds) else seconds
    settings["warm_start"] = _setting("warm_start", args.warm_start, "--warm-start", int)
    settings["margin"] = _setting("margin", args.margin, "--margin", float)
    return settings


def _setting(name: str, text: str, flag: str, kind: type) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        number = "a whole number" if kind is int else "a number"
        raise ConfigError(Problem("command line", flag, f"'{text}' is not {number}",
                                  f"give {flag} {number}")) from None
    check_round_setting(name, value, "command line", flag, f"give {flag} a valid value")
    return value


def cmd_round(args: argparse.Namespace) -> int:
    from tuner.app.schedule.rounds import run_round

    entry = run_round(Path(args.file), args.name, lambda line: print(line, flush=True))
    return 0 if entry["status"] == "done" else 1


def cmd_history(args: argparse.Namespace) -> int:
    from tuner.app.schedule.history import History, history_path
    from tuner.app.schedule.rounds import find_job

    schedule = load_schedule(Path(args.file))
    find_job(schedule, args.name)
    rounds = History(history_path(schedule.path, args.name)).rounds
    if args.json:
        print(json.dumps(rounds, indent=1))
        return 0
    if not rounds:
        print(f"job {args.name} has run no round yet")
        return 0
    print(f"{'round':<6}{'started':<27}{'status':<12}{'trials':<8}{'best':<11}"
          f"{'champion':<22}decision: why")
    for r in rounds:
        print(_history_line(r))
    return 0


def _history_line(r: dict) -> str:
    trials = r.get("trials") or {}
    done = trials.get("complete", 0) + trials.get("pruned", 0)
    best = r.get("best") or {}
    before, after = r.get("champion_before") or {}, r.get("champion_after") or {}
    champion = _champion_change(before.get("version"), after.get("version"))
    if r.get("champion_now") is not None:
        champion += f" ({r['champion_now']:.4g})"
    value = f"{best['value']:.4g}" if "value" in best else "-"
    decision = r.get("decision") or r["status"]
    return (f"{r['round']:<6}{r.get('started') or '-':<27}{r['status']:<12}{done:<8}"
            f"{value:<11}{champion:<22}{decision}: {r.get('why') or ''}")


def _champion_change(before: str | None, after: str | None) -> str:
    """"v1 -> v2", "v2 kept", "v1 (first)" (there was none before), or "-"."""
    if after is None:
        return f"v{before} kept" if before is not None else "-"
    if before is None:
        return f"v{after} (first)"
    return f"v{after} kept" if after == before else f"v{before} -> v{after}"


def _warn_of_local_files(job: Job, schedule: Schedule) -> None:
    """A pod's files go with it: a job whose records are files keeps nothing from one
    round to the next (no history, no warm start, no champion to beat) unless its
    working directory is a persistent volume. Said, not refused: the user may mount one."""
    from tuner.app.schedule.rounds import local_files

    found = local_files(schedule, job)
    if found:
        print(f"warning: job {job.name} keeps {' and '.join(found)} in files; a pod's files "
              "are lost when it ends, so each round would start from nothing. Give the job "
              "storage=postgres and tracking=server (`tuner schedule add` with those "
              "overrides), or mount a persistent volume at the CronJob's workingDir",
              file=sys.stderr)


def cmd_export(args: argparse.Namespace) -> int:
    from tuner.app.schedule.export import export
    from tuner.app.schedule.rounds import find_job

    schedule = load_schedule(Path(args.file))
    job = find_job(schedule, args.name)
    exported = export(job, schedule, args.format, args.image, args.workdir)
    if args.format == "kubernetes":
        _warn_of_local_files(job, schedule)
    if args.out is None:
        for name, text in exported.files.items():
            if len(exported.files) > 1:
                print(f"# --- {name} ---")
            sys.stdout.write(text)
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in exported.files.items():
        (out / name).write_text(text)
        print(f"wrote {out / name}")
    return 0

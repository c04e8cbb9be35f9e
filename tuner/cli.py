"""The ``tuner`` command: thin wrappers that parse arguments and call the library.

Exit codes: 0 done; 1 the sweep stopped on failures, or `tuner sync` left MLflow records
waiting (the tracking server does not answer); 2 bad input (nothing was written);
130 interrupted (the next identical command resumes).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from tuner.errors import ConfigError, Problem, RecordsPending, SweepInterrupted, SweepStopped
from tuner.masking import mask

LOOPBACK = ("127.0.0.1", "localhost", "::1")

DESCRIPTION = """\
Hyperparameter tuning for PyTorch Lightning: Hydra composes the config and the search
space, Optuna runs the trials, MLflow records runs and registers the best model."""

OVERRIDES_HELP = """\
Hydra overrides: GROUP=OPTION picks a config (model=cnn), KEY=VALUE sets a value
(n_trials=60 trainer.max_epochs=20), '+KEY=VALUE' adds a key, '~KEY' removes one."""


def _groups_epilog() -> str:
    from tuner.config.locate import GROUPS, group_options

    lines = ["config groups (GROUP=OPTION; defaults in conf/sweep.yaml):"]
    lines += [f"  {g:<11}{', '.join(group_options(g))}" for g in GROUPS]
    return "\n".join(lines)


SWEEP_EXAMPLES = """
examples:
  tuner sweep                                    # digits MLP, 30 trials, embedded stores
  tuner sweep model=cnn search=cnn sampler=tpe pruner=hyperband n_trials=60 \\
      trainer.max_epochs=20
  tuner sweep experiment=diabetes                # a preset: linear regression, val_loss
  tuner sweep --config-dir ./my_project/conf model=my_model data=my_data search=my_space
  tuner sweep --cfg model=cnn                    # print the composed config and exit

Re-running the same command resumes the study and tops it up to n_trials."""


WORKER_EXAMPLES = """examples (PGPASSWORD and MLFLOW_TRACKING_URI set in the environment):
  tuner sweep storage=postgres tracking=server n_trials=200      # machine 1: the study
  tuner worker storage=postgres tracking=server n_trials=200     # machines 2..N: join it

A worker waits up to --wait seconds for the study to exist, then checks that its config
matches (search space, metrics, directions). The sweep that started the study writes
the report at the end."""


SYNC_HELP = ("Write the MLflow records that waited while the tracking server was down: "
             "runs, params, metrics, models, and the end of the sweep.")

SYNC_EPILOG = """\
When the MLflow tracking server stops answering during a sweep, training goes on and what
could not be written waits in run_dir/mlflow-outbox/<study>/ (tracking.outbox_dir). Slots
write it as soon as the server answers again, and so does the end of the sweep; what is
still waiting after that is written by this command, given the sweep's own overrides:

  tuner sweep tracking=server n_trials=200       # the server went away meanwhile
  tuner sync tracking=server n_trials=200        # once it is back

Each record is written once, even if sync is interrupted and run again. Exit code 0 when
nothing is left waiting; 1 when the server does not answer (nothing is touched) or some
records are left (a trial still training, a record the server refuses), with the reason."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tuner", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"tuner {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str, epilog: str = "") -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text, epilog=epilog,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.add_argument("--config-dir", metavar="DIR",
                         help="a folder of your own config groups (model/, data/, search/, "
                              "...), added to tuner's built-in ones")
        return sub

    sweep = command("sweep", "Run (or resume) a study: trials until n_trials are done.",
                    _groups_epilog() + "\n" + SWEEP_EXAMPLES)
    sweep.add_argument("--cfg", action="store_true",
                       help="print the composed, resolved config and exit (writes nothing)")
    sweep.add_argument("overrides", nargs="*", metavar="OVERRIDE", help=OVERRIDES_HELP)
    sweep.set_defaults(func=cmd_sweep)

    worker = command("worker", "Join a study that `tuner sweep` started: this machine's "
                               "slots train trials until the study's budget is spent.",
                     WORKER_EXAMPLES)
    worker.add_argument("--wait", type=float, default=300.0, metavar="SECONDS",
                        help="how long to wait for the sweep to create the study "
                             "(default: 300)")
    worker.add_argument("overrides", nargs="*", metavar="OVERRIDE",
                        help="the same overrides as the sweep it joins; " + OVERRIDES_HELP)
    worker.set_defaults(func=cmd_worker)

    sync = command("sync", SYNC_HELP, SYNC_EPILOG)
    sync.add_argument("overrides", nargs="*", metavar="OVERRIDE",
                      help="the same overrides as the sweep whose records to write; "
                           + OVERRIDES_HELP)
    sync.set_defaults(func=cmd_sync)

    best = command("best", "Show a study's best trial: value, params and composed config.",
                   "examples:\n  tuner best\n  tuner best digits-cnn\n"
                   "  tuner best diabetes-linear --json")
    best.add_argument("args", nargs="*", metavar="[STUDY] [OVERRIDE]",
                      help="the study name (default: the one the config composes to), then "
                           "overrides that locate the storage, e.g. run_dir=... storage=sqlite")
    best.add_argument("--json", action="store_true", help="print JSON instead of text")
    best.set_defaults(func=cmd_best)

    ui = command("ui", "Open the MLflow UI over the study records (loopback, or basic-auth).",
                 "examples:\n  tuner ui\n  tuner ui --port 5001 run_dir=/data/runs")
    ui.add_argument("--host", default="127.0.0.1",
                    help="interface to bind; one other than loopback needs "
                         "MLFLOW_AUTH_ADMIN_PASSWORD (basic-auth)")
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("overrides", nargs="*", metavar="OVERRIDE",
                    help="overrides that locate the MLflow store, e.g. run_dir=...")
    ui.set_defaults(func=cmd_ui)

    serve = command("serve", "Serve a study's champion model over HTTP (MLflow's model "
                             "server, loopback only).",
                    "examples:\n  tuner serve\n  tuner serve digits-cnn --port 5002\n\n"
                    "Then: curl -X POST -H 'Content-Type: application/json' "
                    "-d '{\"inputs\": [[0.0, ...]]}' http://127.0.0.1:5001/invocations")
    serve.add_argument("args", nargs="*", metavar="[STUDY] [OVERRIDE]",
                       help="the study whose champion to serve, then overrides")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (loopback only)")
    serve.add_argument("--port", type=int, default=5001)
    serve.set_defaults(func=cmd_serve)

    from tuner.schedule.commands import add_schedule_command

    add_schedule_command(commands)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tuner")
    except PackageNotFoundError:
        return "unknown"


def _study_and_overrides(args: Sequence[str]) -> tuple[str | None, list[str]]:
    """`tuner best [STUDY] [OVERRIDE...]`: the first word without '=' is the study."""
    study = None
    overrides = []
    for arg in args:
        if study is None and "=" not in arg and not arg.startswith(("+", "~")):
            study = arg
        else:
            overrides.append(arg)
    return study, overrides


def _compose(config_dir: str | None, overrides: list[str], study: str | None = None):
    from tuner.config.compose import compose_config

    if study is not None:
        overrides = [*overrides, f"study_name={study}"]
    return compose_config(overrides, config_dir)


def _check_loopback(host: str) -> None:
    if host not in LOOPBACK:
        raise ConfigError(Problem(
            "command line", "--host", f"refusing to bind {host}: the MLflow server has no "
            "authentication here, so it would expose the records (and the models) to the "
            "network", "use --host 127.0.0.1 and reach it through an SSH tunnel "
            "(ssh -L 5000:127.0.0.1:5000 host)"))


# -- commands -------------------------------------------------------------------------


def cmd_sweep(args: argparse.Namespace) -> int:
    from omegaconf import OmegaConf

    composed = _compose(args.config_dir, args.overrides)
    if args.cfg:
        print(OmegaConf.to_yaml(composed.cfg), end="")
        return 0
    from tuner.plan import make_plan

    plan = make_plan(composed)
    from tuner.startup import start_slots

    pool = start_slots(plan)  # importing torch there takes seconds: the driver goes on
    # Imported after the checks: tuner.sweep brings in MLflow (seconds), and bad input
    # is refused without it.
    from tuner.progress import make_reporter
    from tuner.sweep import describe_best, run_sweep

    reporter = make_reporter()
    reporter.print(f"study {plan.study_name}: {plan.cfg.n_trials} trials of "
                   f"{composed.choices.get('model')} on {composed.choices.get('data')}, "
                   f"optimising {', '.join(plan.metrics)} ({', '.join(plan.directions)}); "
                   f"records in {plan.run_dir}")
    outcome = run_sweep(plan, reporter, pool)
    counts = outcome.summary.counts
    reporter.print(f"done ({outcome.stop_reason}): {counts['COMPLETE']} complete, "
                   f"{counts['PRUNED']} pruned, {counts['FAIL']} failed")
    for line in describe_best(plan, outcome.summary):
        reporter.print(line)
    reporter.print("browse the runs: tuner ui" + _where_suffix(args))
    if outcome.summary.pending:
        reporter.print(_pending_warning(outcome.summary.pending, args))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from tuner import torchrun
    from tuner.plan import make_plan

    plan = make_plan(_compose(args.config_dir, args.overrides))
    from tuner.startup import start_slots

    pool = None if torchrun.launched() else start_slots(plan)  # torchrun: ranks, no slots
    from tuner.progress import make_reporter  # after the checks, as in cmd_sweep
    from tuner.sweep import run_worker

    reporter = make_reporter()
    reporter.print(f"worker for study {plan.study_name}: trials until n_trials="
                   f"{plan.cfg.n_trials} are done")
    outcome = run_worker(plan, reporter, args.wait, pool)
    if outcome is None:  # a torchrun rank other than 0: rank 0 reports
        return 0
    reporter.print(f"worker done ({outcome.stop_reason}): trained {outcome.trained} trial(s) "
                   "here")
    if outcome.pending:
        reporter.print(_pending_warning(outcome.pending, args))
    return 0


def _pending_warning(pending: int, args: argparse.Namespace) -> str:
    import shlex

    command = ["tuner", "sync"]
    if args.config_dir:
        command += ["--config-dir", args.config_dir]
    command = shlex.join(command + args.overrides)
    return f"warning: {pending} MLflow records pending; run `{command}` when the server is back"


def cmd_sync(args: argparse.Namespace) -> int:
    from tuner.plan import make_plan
    from tuner.sync import run_sync

    plan = make_plan(_compose(args.config_dir, args.overrides))
    run_sync(plan, lambda line: print(mask(line), flush=True))
    return 0


def _where_suffix(args: argparse.Namespace) -> str:
    """The arguments that say where the records are, to repeat in a follow-up command."""
    from tuner.config.locate import override_key

    keep = [o for o in args.overrides
            if override_key(o).split(".")[0] in ("run_dir", "tracking", "storage")]
    if args.config_dir:
        keep.insert(0, f"--config-dir {args.config_dir}")
    return "".join(f" {o}" for o in keep)


def cmd_best(args: argparse.Namespace) -> int:
    import json

    from tuner.records import best_report

    study, overrides = _study_and_overrides(args.args)
    composed = _compose(args.config_dir, overrides, study)
    report = best_report(composed)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    print(f"study {report['study']}: {report['complete']} complete, {report['pruned']} pruned, "
          f"{report['failed']} failed of n_trials={report['n_trials']}")
    best = report["best"]
    if best is None:
        print("no trial has completed yet")
        return 0
    values = ", ".join(f"{m}={v:.6g}" for m, v in best["values"].items())
    print(f"best trial {best['number']}: {values}")
    for key, value in best["params"].items():
        print(f"  {key} = {value}")
    if best.get("mlflow_run_id"):
        print(f"MLflow run: {best['mlflow_run_id']}")
    if report.get("pareto_front"):
        print(f"Pareto front: trials {', '.join(str(n) for n in report['pareto_front'])}")
    print("config:")
    print("  " + best["config"].rstrip().replace("\n", "\n  "))
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from tuner.records import existing_tracking_uri
    from tuner.ui_auth import ADMIN_PASSWORD_ENV, MIN_PASSWORD_LENGTH, basic_auth_config

    public = args.host not in LOOPBACK
    if public and not os.environ.get(ADMIN_PASSWORD_ENV):
        raise ConfigError(Problem(
            "command line", "--host", f"refusing to bind {args.host} without authentication: "
            "the records and models would be open to the network",
            f"set {ADMIN_PASSWORD_ENV} to turn on MLflow's basic-auth (user 'admin'), or "
            "use --host 127.0.0.1 and an SSH tunnel (ssh -L 5000:127.0.0.1:5000 host)"))
    if public and len(os.environ[ADMIN_PASSWORD_ENV]) < MIN_PASSWORD_LENGTH:
        raise ConfigError(Problem(
            "environment", ADMIN_PASSWORD_ENV,
            f"is shorter than {MIN_PASSWORD_LENGTH} characters, which MLflow refuses",
            f"choose a longer password (at least {MIN_PASSWORD_LENGTH} characters)"))
    composed = _compose(args.config_dir, args.overrides)
    uri = existing_tracking_uri(composed)
    command = [sys.executable, "-m", "mlflow", "server" if public else "ui",
               "--backend-store-uri", uri, "--host", args.host, "--port", str(args.port)]
    if public:
        os.environ["MLFLOW_AUTH_CONFIG_PATH"] = str(basic_auth_config(
            Path(composed.cfg.run_dir).resolve()))
        # The auth app signs its CSRF tokens with this key; one per start unless given.
        os.environ.setdefault("MLFLOW_FLASK_SERVER_SECRET_KEY", secrets.token_urlsafe(32))
        command += ["--app-name", "basic-auth"]
    if composed.cfg.tracking.artifact_location:
        command += ["--default-artifact-root", composed.cfg.tracking.artifact_location]
    auth = " with basic-auth (user 'admin')" if public else ""
    print(f"MLflow UI for {uri} at http://{args.host}:{args.port}{auth} (Ctrl-C to stop)",
          flush=True)
    os.execv(sys.executable, command)  # hand the process (and Ctrl-C) to MLflow


def cmd_serve(args: argparse.Namespace) -> int:
    _check_loopback(args.host)
    from tuner.records import champion_uri, existing_tracking_uri

    study, overrides = _study_and_overrides(args.args)
    composed = _compose(args.config_dir, overrides, study)
    uri = existing_tracking_uri(composed)
    model_uri = champion_uri(composed)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri,
               "--env-manager", "local", "--host", args.host, "--port", str(args.port)]
    print(f"serving {model_uri} at http://{args.host}:{args.port}/invocations (Ctrl-C to "
          "stop)", flush=True)
    os.execv(sys.executable, command)


def command() -> NoReturn:
    """The `tuner` command: ``main``, then a quick exit (tuner.exits)."""
    from tuner.exits import exit_quickly

    exit_quickly(main())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as error:
        print(mask(f"error: {error}"), file=sys.stderr)
        print("nothing was written.", file=sys.stderr)
        return 2
    except (SweepStopped, RecordsPending) as error:
        print(mask(f"error: {error}"), file=sys.stderr)
        return 1
    except (KeyboardInterrupt, SweepInterrupted, SystemExit) as error:
        # From here a second Ctrl-C ends the process at once, even in the interpreter's
        # exit handlers; the trials' records were written before we got here.
        signal.signal(signal.SIGINT, lambda signum, frame: os._exit(130))
        # SystemExit: Lightning answers Ctrl-C inside fit() with sys.exit(1).
        print(f"\ninterrupted ({type(error).__name__}): the running trial is marked FAIL and "
              "its run KILLED; run the same command again to resume.", file=sys.stderr)
        return 130

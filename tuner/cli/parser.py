"""The ``tuner`` command line: every command, option and help text, in one table.

Each command's function (``func``) is in :mod:`tuner.cli.commands`; importing this
module costs no torch, Lightning, MLflow or Optuna (``tuner --help`` is instant).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tuner.cli.commands import (
    cmd_best,
    cmd_compare,
    cmd_dashboard,
    cmd_init,
    cmd_replay,
    cmd_report,
    cmd_serve,
    cmd_sweep,
    cmd_sync,
    cmd_ui,
    cmd_worker,
)

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
  tuner sweep launcher=slurm launcher.nodes=8 storage=postgres tracking=server
                                                 # workers as SLURM jobs (README: Many machines)

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


INIT_EPILOG = """\
examples (the classes importable: installed, or their folder on PYTHONPATH):
  tuner init my_project.models.Net my_project.data.Digits
  tuner sweep --config-dir conf experiment=net

It writes DIR/model/, DIR/data/ (each argument with its default; ??? where a value is
needed), DIR/search/ (ranges proposed from the defaults: edit them) and
DIR/experiment/ (the preset, with the metric the module logs: one batch is trained with
the defaults to find it). Nothing is overwritten without --force."""


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
    sweep.add_argument("--detach", action="store_true",
                       help="launcher=slurm: return once the jobs are submitted (the same "
                            "command without it follows them later)")
    sweep.add_argument("overrides", nargs="*", metavar="OVERRIDE", help=OVERRIDES_HELP)
    sweep.set_defaults(func=cmd_sweep, words="overrides")

    worker = command("worker", "Join a study that `tuner sweep` started: this machine's "
                               "slots train trials until the study's budget is spent.",
                     WORKER_EXAMPLES)
    worker.add_argument("--wait", type=float, default=300.0, metavar="SECONDS",
                        help="how long to wait for the sweep to create the study "
                             "(default: 300)")
    worker.add_argument("overrides", nargs="*", metavar="OVERRIDE",
                        help="the same overrides as the sweep it joins; " + OVERRIDES_HELP)
    worker.set_defaults(func=cmd_worker, words="overrides")

    sync = command("sync", SYNC_HELP, SYNC_EPILOG)
    sync.add_argument("overrides", nargs="*", metavar="OVERRIDE",
                      help="the same overrides as the sweep whose records to write; "
                           + OVERRIDES_HELP)
    sync.set_defaults(func=cmd_sync, words="overrides")

    best = command("best", "Show a study's best trial: value, params and composed config.",
                   "examples:\n  tuner best\n  tuner best digits-cnn\n"
                   "  tuner best diabetes-linear --json")
    best.add_argument("args", nargs="*", metavar="[STUDY] [OVERRIDE]",
                      help="the study name (default: the one the config composes to), then "
                           "overrides that locate the storage, e.g. run_dir=... storage=sqlite")
    best.add_argument("--json", action="store_true", help="print JSON instead of text")
    best.set_defaults(func=cmd_best, words="args")

    replay = command("replay", "Train a population's winner (strategy=pbt) again along its "
                               "lineage, and compare each segment with the sweep's value.",
                     "examples:\n  tuner replay\n  tuner replay digits-mlp --trial 38\n"
                     "On CPU, with the thread count its slot had (recorded), it reaches the "
                     "sweep's values exactly.")
    replay.add_argument("args", nargs="*", metavar="[STUDY] [OVERRIDE]",
                        help="the study name (default: the one the config composes to), "
                             "then overrides that locate the storage, e.g. run_dir=...")
    replay.add_argument("--trial", type=int, metavar="N",
                        help="the segment whose lineage to replay (default: the best)")
    replay.set_defaults(func=cmd_replay, words="args")

    report = command("report", "Write a study's report: one self-contained HTML page with "
                               "interactive plots (also while the sweep runs).",
                     "examples:\n  tuner report\n  tuner report digits-cnn --out cnn.html\n"
                     "  tuner report digits-mlp run_dir=/data/runs")
    report.add_argument("args", nargs="*", metavar="[STUDY] [OVERRIDE]",
                        help="the study (default: the one the config composes to), then "
                             "overrides that locate the storage")
    report.add_argument("--out", type=Path, default=None,
                        help="the page to write (default: STUDY-report.html here)")
    report.set_defaults(func=cmd_report, words="args")

    compare = command("compare", "Put studies side by side: best values, the params in "
                                 "which their best trials differ, convergence, cost.",
                      "examples:\n  tuner compare digits-mlp digits-cnn\n"
                      "  tuner compare nightly-r3 nightly-r4 --html rounds.html\n\n"
                      "The comparison is also logged as an MLflow run (tag "
                      "tuner.role=comparison) in the first study's experiment.")
    compare.add_argument("args", nargs="+", metavar="STUDY",
                         help="two studies or more of the same metrics and directions, then "
                              "overrides (key=value) that locate the storage")
    compare.add_argument("--html", type=Path, default=None, metavar="FILE",
                         help="also write the comparison page, with its plots, to FILE")
    compare.add_argument("--no-log", action="store_true",
                         help="do not log the comparison run to MLflow")
    compare.set_defaults(func=cmd_compare, words="args")

    dashboard = command("dashboard", "Open optuna-dashboard over a study's storage: a live, "
                                     "read-only view (loopback, or basic-auth).",
                        "examples:\n  tuner dashboard\n  tuner dashboard digits-cnn --port 8081")
    dashboard.add_argument("args", nargs="*", metavar="[STUDY] [OVERRIDE]",
                           help="the study to open, then overrides that locate the storage")
    dashboard.add_argument("--host", default="127.0.0.1",
                           help="interface to bind; one other than loopback needs "
                                "MLFLOW_AUTH_ADMIN_PASSWORD (basic-auth, user admin)")
    dashboard.add_argument("--port", type=int, default=8080,
                           help="port to bind (default: 8080)")
    dashboard.set_defaults(func=cmd_dashboard, words="args")

    ui = command("ui", "Open the MLflow UI over the study records (loopback, or basic-auth).",
                 "examples:\n  tuner ui\n  tuner ui --port 5001 run_dir=/data/runs")
    ui.add_argument("--host", default="127.0.0.1",
                    help="interface to bind; one other than loopback needs "
                         "MLFLOW_AUTH_ADMIN_PASSWORD (basic-auth)")
    ui.add_argument("--port", type=int, default=5000, help="port to bind (default: 5000)")
    ui.add_argument("--workers", type=int, default=1,
                    help="server processes answering requests (default: 1, which answers "
                         "a few browsers and starts in half the time of MLflow's 4)")
    ui.add_argument("overrides", nargs="*", metavar="OVERRIDE",
                    help="overrides that locate the MLflow store, e.g. run_dir=...")
    ui.set_defaults(func=cmd_ui, words="overrides")

    serve = command("serve", "Serve a study's champion model over HTTP (MLflow's model "
                             "server, loopback only).",
                    "examples:\n  tuner serve\n  tuner serve digits-cnn --port 5002\n\n"
                    "Then: curl -X POST -H 'Content-Type: application/json' "
                    "-d '{\"inputs\": [[0.0, ...]]}' http://127.0.0.1:5001/invocations\n"
                    "with one row of raw values per example: for digits-mlp, the 64 pixels "
                    "(0..16) of an 8x8 digit as scikit-learn's load_digits gives them. The "
                    "model scales them as its data module did in training (a data module's "
                    "serving_transforms); it prints what it takes, and a request that works, "
                    "once it is ready.")
    serve.add_argument("args", nargs="*", metavar="[STUDY] [OVERRIDE]",
                       help="the study whose champion to serve, then overrides")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (loopback only)")
    serve.add_argument("--port", type=int, default=5001, help="port to bind (default: 5001)")
    serve.set_defaults(func=cmd_serve, words="args")

    init = command("init", "Write a config folder for your own LightningModule and "
                           "LightningDataModule: their arguments, a proposed search space and "
                           "a preset to run.", INIT_EPILOG)
    init.add_argument("module_class", metavar="MODULE_CLASS",
                      help="your LightningModule's dotted path, e.g. my_project.models.Net")
    init.add_argument("data_class", metavar="DATA_CLASS",
                      help="your LightningDataModule's dotted path")
    init.add_argument("--dir", type=Path, default=Path("conf"),
                      help="the folder to write (default: ./conf); pass it to --config-dir")
    init.add_argument("--force", action="store_true", help="overwrite files that exist")
    init.set_defaults(func=cmd_init)

    from tuner.app.schedule.commands import add_schedule_command

    add_schedule_command(commands)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tuner")
    except PackageNotFoundError:
        return "unknown"

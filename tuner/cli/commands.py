"""What each ``tuner`` command does: compose the config, call the app, print the outcome.

Heavy imports (torch in the slots, MLflow in the driver) happen inside the commands,
after the input has been checked: bad input is refused in a fraction of a second.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tuner.core.masking import mask


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


def cmd_sweep(args: argparse.Namespace) -> int:
    from omegaconf import OmegaConf

    composed = _compose(args.config_dir, args.overrides)
    if args.cfg:
        print(OmegaConf.to_yaml(composed.cfg), end="")
        return 0
    from tuner.config.plan import make_plan

    plan = make_plan(composed)
    if plan.slurm is not None:
        from tuner.cli.slurm_sweep import sweep_on_slurm

        return sweep_on_slurm(plan, composed, args, _where_suffix(args))
    if args.detach:
        from tuner.core.errors import ConfigError, Problem

        raise ConfigError(Problem("command line", "--detach",
                                  "applies to launcher=slurm only: a local sweep trains here",
                                  "drop --detach, or add launcher=slurm"))
    from tuner.launch.startup import start_slots

    pool = start_slots(plan)  # importing torch there takes seconds: the driver goes on
    # Imported after the checks: tuner.app.sweep brings in MLflow (seconds), and bad input
    # is refused without it.
    from tuner.app.progress import make_reporter
    from tuner.app.sweep import describe_best, run_sweep

    reporter = make_reporter()
    population = plan.population
    shape = ("" if population is None else
             f" (a population of {population.size}, {population.generations} segments of "
             f"{population.interval} epochs each)")
    reporter.print(f"study {plan.study_name}: {plan.cfg.n_trials} trials{shape} of "
                   f"{composed.choices.get('model')} on {composed.choices.get('data')}, "
                   f"optimising {', '.join(plan.metrics)} ({', '.join(plan.directions)}); "
                   f"records in {plan.run_dir}")
    outcome = run_sweep(plan, reporter, pool)
    counts = outcome.summary.counts
    said = (f"{counts['COMPLETE']} complete, {counts['PRUNED']} pruned, "
            f"{counts['FAIL']} failed")
    if outcome.stop_reason == "budget" and not outcome.trained:
        more = ("raise n_trials to run more" if population is None else
                "its population has trained every segment; a larger population or more "
                "epochs is a new study (study_name=...)")
        reporter.print(f"nothing to run: the study has its {plan.cfg.n_trials} trials already "
                       f"({said}); {more}")
    else:
        reporter.print(f"done ({outcome.stop_reason}): {said}")
    for line in describe_best(plan, outcome.summary):
        reporter.print(line)
    reporter.print("browse the runs: tuner ui" + _where_suffix(args))
    if outcome.summary.pending:
        reporter.print(_pending_warning(outcome.summary.pending, args))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from tuner.config.machine import launched_by_torchrun
    from tuner.config.plan import make_plan

    plan = make_plan(_compose(args.config_dir, args.overrides))
    from tuner.launch.startup import start_slots

    pool = None if launched_by_torchrun() else start_slots(plan)  # torchrun: ranks, no slots
    from tuner.app.progress import make_reporter  # after the checks, as in cmd_sweep
    from tuner.app.worker import run_worker

    reporter = make_reporter()
    reporter.print(f"worker for study {plan.study_name}: trials until n_trials="
                   f"{plan.cfg.n_trials} are done")
    outcome = run_worker(plan, reporter, args.wait, pool)
    if outcome is None:  # a torchrun rank other than 0: rank 0 reports
        return 0
    reporter.print(f"worker done ({outcome.stop_reason}): trained {outcome.trained} trial(s) "
                   "here")
    if outcome.exported:
        reporter.print(outcome.exported)
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
    from tuner.app.finish import run_sync
    from tuner.config.plan import make_plan

    plan = make_plan(_compose(args.config_dir, args.overrides))
    run_sync(plan, lambda line: print(mask(line), flush=True))
    return 0


def _where_suffix(args: argparse.Namespace, overrides: Sequence[str] | None = None) -> str:
    """The arguments that say where the records are, to repeat in a follow-up command."""
    from tuner.config.locate import override_key

    overrides = args.overrides if overrides is None else overrides
    keep = [o for o in overrides
            if override_key(o).split(".")[0] in ("run_dir", "tracking", "storage")]
    if args.config_dir:
        keep.insert(0, f"--config-dir {args.config_dir}")
    return "".join(f" {o}" for o in keep)


def cmd_best(args: argparse.Namespace) -> int:
    import json

    from tuner.app.lookup import best_report

    study, overrides = _study_and_overrides(args.args)
    composed = _compose(args.config_dir, overrides, study)
    report = best_report(composed)
    if args.json:
        if report["best"] is not None:  # the config as JSON too, not a YAML string in it
            import yaml

            report["best"]["config"] = yaml.safe_load(report["best"]["config"] or "{}")
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
    if best.get("compressed"):
        print(best["compressed"]["said"])
    from tuner.app.lineage import schedule_lines

    for line in schedule_lines(best.get("schedule", [])):
        print(line)
    if best.get("mlflow_run_id"):
        print(f"MLflow run: {best['mlflow_run_id']}")
    if report.get("pareto_front"):
        print(f"Pareto front: trials {', '.join(str(n) for n in report['pareto_front'])}")
    print("config:")
    print("  " + best["config"].rstrip().replace("\n", "\n  "))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from tuner.app.lineage_replay import replay_lineage

    study, overrides = _study_and_overrides(args.args)
    replayed = replay_lineage(_compose(args.config_dir, overrides, study), args.trial,
                              lambda line: print(line, flush=True))
    last = replayed[-1]
    verdict = ("reproduced exactly" if last.replayed == last.recorded else
               f"{last.replayed - last.recorded:+.6g} from it (not the same machine, thread "
               "count or kernels: GPU kernels are not deterministic)")
    print(f"trial {last.trial.number} replayed: {last.replayed:.6g}; the sweep recorded "
          f"{last.recorded:.6g}: {verdict}")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from tuner.app.ui import check_ui_host, local_url, ui_command

    check_ui_host(args.host, args.port)  # before anything else: an open host is refused
    from tuner.app.server_process import run_server

    command, line = ui_command(_compose(args.config_dir, args.overrides), args.host, args.port,
                               args.workers)
    return run_server(command, local_url(args.host, args.port, "/health"),
                      "starting the MLflow UI...", line)


def cmd_serve(args: argparse.Namespace) -> int:
    from tuner.app.ui import check_loopback, local_url, serve_command

    check_loopback(args.host, args.port)
    study, overrides = _study_and_overrides(args.args)
    from tuner.app.server_process import run_server

    command, line = serve_command(_compose(args.config_dir, overrides, study), args.host,
                                  args.port)
    return run_server(command, local_url(args.host, args.port, "/ping"),
                      "starting MLflow's model server (it loads the champion first)...", line)



def _studies_and_overrides(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """`tuner compare A B [OVERRIDE...]`: every word without '=' is a study."""
    studies = [a for a in args if "=" not in a and not a.startswith(("+", "~"))]
    return studies, [a for a in args if a not in studies]


def cmd_report(args: argparse.Namespace) -> int:
    from tuner.app.study_report import write_report

    study, overrides = _study_and_overrides(args.args)
    path = write_report(_compose(args.config_dir, overrides, study), args.out)
    print(f"report written: {path.resolve()}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from tuner.app.compare import check_names, print_table, run_compare

    studies, overrides = _studies_and_overrides(args.args)
    check_names(studies)
    composed = _compose(args.config_dir, overrides, studies[0])
    outcome = run_compare(composed, studies, args.html, log=not args.no_log, show=print_table)
    if outcome.page is not None:
        print(f"page written: {outcome.page.resolve()}")
    if outcome.run_id is not None:
        print(f"logged as MLflow run {outcome.run_id} beside study {studies[0]}'s runs "
              "(tag tuner.role=comparison); browse it: tuner ui" + _where_suffix(args, overrides))
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from tuner.app.dashboard import make_dashboard
    from tuner.app.ui import check_ui_host

    check_ui_host(args.host, args.port)  # before anything else, as for tuner ui
    study, overrides = _study_and_overrides(args.args)
    server, url = make_dashboard(_compose(args.config_dir, overrides, study), args.host,
                                 args.port)
    print(f"optuna-dashboard (read-only) at {url} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("\ndashboard stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from tuner.app.scaffold import init_project

    made = init_project(args.module_class, args.data_class, args.dir, force=args.force)
    for path in made.files:
        print(f"wrote {path}")
    if made.metric is None:
        print(f"metric: not found ({made.why_no_metric}); set it in "
              f"{args.dir}/experiment/{made.experiment}.yaml")
    else:
        print(f"metric: {made.metric} ({made.direction})")
    print(f"next: tuner sweep --config-dir {args.dir} experiment={made.experiment}")
    return 0

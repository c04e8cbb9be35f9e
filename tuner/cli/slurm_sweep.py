"""``tuner sweep launcher=slurm`` on the command line: what it prints, and what each
job's ``tuner worker`` is given (tuner.app.slurm_sweep does the rest)."""

from __future__ import annotations

import argparse

ENTRY = "tuner.cli:main"  # what each job runs, in-process: the `tuner` command's function


def sweep_on_slurm(plan, composed, args: argparse.Namespace, where: str) -> int:
    """``tuner sweep launcher=slurm``: jobs train; this command follows and finishes.
    ``where``: the arguments that locate the records, for the follow-up command."""
    from tuner.app.progress import make_reporter
    from tuner.app.slurm_sweep import run_slurm_sweep
    from tuner.app.sweep import describe_best

    reporter = make_reporter()
    reporter.print(f"study {plan.study_name}: {plan.cfg.n_trials} trials of "
                   f"{composed.choices.get('model')} on {composed.choices.get('data')}, "
                   f"optimising {', '.join(plan.metrics)} ({', '.join(plan.directions)}), "
                   f"trained by SLURM jobs")
    summary = run_slurm_sweep(plan, reporter, _worker_overrides(plan, args), ENTRY,
                              detach=args.detach)
    if summary is None:  # detached
        return 0
    counts = summary.counts
    reporter.print(f"done: {counts['COMPLETE']} complete, {counts['PRUNED']} pruned, "
                   f"{counts['FAIL']} failed")
    for line in describe_best(plan, summary):
        reporter.print(line)
    reporter.print("browse the runs: tuner ui" + where)
    return 0


def _worker_overrides(plan, args: argparse.Namespace) -> list[str]:
    """What each SLURM job's ``tuner worker`` is given: the sweep's overrides without
    the launcher's (a job trains on its own node's slots), and paths made absolute
    (a job may start elsewhere)."""
    import os

    from tuner.config.locate import override_key

    words = [o for o in args.overrides
             if override_key(o).lstrip("+~").split(".")[0] not in ("launcher", "run_dir")]
    words.append(f"run_dir={plan.run_dir.resolve()}")
    if args.config_dir:
        words = ["--config-dir", os.path.abspath(args.config_dir), *words]
    return words

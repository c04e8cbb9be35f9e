"""``tuner sweep launcher=slurm``: the study here, its trials trained by SLURM jobs.

    check the cluster               sbatch there, the controller answers, the partition
                                    exists (tuner.launch.slurm_cluster); nothing written yet
    open the study and the runs     as a local sweep does: the storage, the parent run
    submit the workers              one array of jobs, each a `tuner worker` with this
                                    sweep's overrides (tuner.launch.slurm_jobs); or, when
                                    jobs of this study are still queued, follow those
    follow                          each finished trial shown as it lands in the study, each
                                    job's state as it changes, until every job has ended
    finish                          champion, leaderboard and report, as a local sweep does
                                    (the best model was exported by the job that trained it)

``--detach`` returns once the jobs are submitted; the same command later follows them (or,
once they have ended, writes the end of the records). Ctrl-C stops following, not the jobs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.app.finish import finish_records
from tuner.app.progress import PlainReporter
from tuner.app.report import Summary
from tuner.app.watch import TrialWatch, tally_of
from tuner.config.plan import SweepPlan
from tuner.core import attrs
from tuner.core.errors import SweepStopped
from tuner.core.results import TrialResult
from tuner.launch.slurm_cluster import check_cluster, live_jobs
from tuner.launch.slurm_jobs import WorkerJob, job_name, log_tail, submit_workers
from tuner.study.storage import open_storage
from tuner.study.studies import open_study
from tuner.study.trial_attrs import trial_attr
from tuner.study.trials import FINISHED
from tuner.tracking.runs import Tracker

POLL_S = 2.0  # seconds between two looks at the study and the queue
JOIN_WAIT_S = 300  # how long a job's worker waits for the study (it exists already)


def run_slurm_sweep(plan: SweepPlan, reporter: PlainReporter, overrides: Sequence[str],
                    entry: str, detach: bool = False, poll_s: float = POLL_S
                    ) -> Summary | None:
    """Open the plan's study, have SLURM jobs train it, follow them (unless ``detach``:
    then None) and finish its records (their summary). ``overrides``: what each job's
    ``tuner worker`` is given; ``entry``: the ``tuner`` command's function
    ("module:name"), which each job calls. Raises
    ConfigError (nothing written or submitted) when the cluster refuses the launcher,
    SweepStopped when the jobs ended before the budget was spent."""
    launcher = plan.slurm
    assert launcher is not None
    check_cluster(launcher, plan.locate)
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    study = open_study(plan, open_storage(plan.cfg.storage))
    tracker = Tracker(plan.cfg.tracking, plan.study_name)
    tracker.open(study, plan.study_params())
    name = job_name(plan.study_name)
    jobs = _submit_or_find(plan, study, reporter, overrides, entry, name)
    if detach:
        reporter.print(f"detached: the jobs go on. Follow them with the same command "
                       f"without --detach (or squeue --name={name}); stop them with "
                       f"scancel --name={name}")
        return None
    watch = TrialWatch(plan, study, reporter)
    try:
        _follow(plan, study, watch, reporter, name, poll_s)
    except BaseException as error:
        reporter.stop()
        if isinstance(error, KeyboardInterrupt):
            error.said = (f"stopped following; the jobs go on (squeue --name={name}). Run "
                          f"the same command again to follow them, or stop them with "
                          f"scancel --name={name}")
        raise
    done = _finished(study)
    stopped = done < plan.cfg.n_trials
    try:
        summary = finish_records(plan, study, tracker, "FAILED" if stopped else "FINISHED",
                                 reporter.phase)
    finally:
        reporter.stop()
    if stopped:
        logs = "".join(f"\n--- job {job}: the end of its error log ---\n{log_tail(plan, job)}"
                       for job in jobs[:2])
        raise SweepStopped(f"the SLURM jobs ended with {done} of n_trials={plan.cfg.n_trials} "
                           f"trials done; run the same command to submit new jobs (logs in "
                           f"{launcher.folder}){logs}")
    return summary


def _submit_or_find(plan: SweepPlan, study: optuna.Study, reporter: PlainReporter,
                    overrides: Sequence[str], entry: str, name: str
                    ) -> list[str]:
    """The study's jobs still in the queue (a detached or interrupted command left them),
    or new ones when trials are left to train."""
    launcher = plan.slurm
    assert launcher is not None
    queued = live_jobs(name)
    if queued:
        jobs = sorted(queued)
        reporter.print(f"jobs of study {plan.study_name} are in the queue already "
                       f"({', '.join(jobs)}): following them")
        return jobs
    if _finished(study) >= plan.cfg.n_trials:
        return []
    job = WorkerJob(entry, ("worker", "--wait", str(JOIN_WAIT_S), *overrides),
                    launcher.nodes_per_trial, int(plan.cfg.devices_per_trial),
                    launcher.requeue)
    jobs = submit_workers(plan, job)
    per_job = (f"{launcher.nodes_per_trial} nodes each, one trial across them"
               if launcher.nodes_per_trial > 1 else "a tuner worker on one node each")
    reporter.print(f"submitted {len(jobs)} SLURM job(s) {', '.join(jobs)} ({per_job}, "
                   f"{launcher.time_min} min); logs in {launcher.folder}")
    return jobs


def _finished(study: optuna.Study) -> int:
    return sum(t.state in FINISHED for t in study.get_trials(deepcopy=False))


def _follow(plan: SweepPlan, study: optuna.Study, watch: TrialWatch, reporter: PlainReporter,
            name: str, poll_s: float) -> None:
    """Show each trial that ends and each job's state as it changes, until no job of the
    study is left in the queue."""
    ended = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    shown = {t.number for t in ended}
    watch.start()
    states: dict[str, str] = {}
    while True:
        for trial in study.get_trials(deepcopy=False):
            if trial.state.is_finished() and trial.number not in shown:
                shown.add(trial.number)
                ended.append(trial)
                # The counts as of this trial: several may land between two looks.
                watch.on_finished(_result_of(trial), tally_of(study, plan, ended))
        live = live_jobs(name)
        for job in sorted(set(states) | set(live)):
            state = live.get(job, "ENDED")
            if states.get(job) != state:
                reporter.print(f"job {job}: {state.lower()}")
        states = live
        if not live:
            return
        time.sleep(poll_s)


def _result_of(trial: FrozenTrial) -> TrialResult:
    """What a trial's line shows, read back from the study (a job's driver told it)."""
    seconds = trial.duration.total_seconds() if trial.duration is not None else 0.0
    pruned_at = trial.last_step if trial.state == TrialState.PRUNED else None
    return TrialResult(trial.number, trial.state, trial.values,
                       reason=trial_attr(trial, attrs.FAIL_REASON_ATTR), pruned_at=pruned_at,
                       seconds=seconds)

"""SLURM jobs that train a study: submitted with submitit, each one a ``tuner worker``.

submitit writes each job's sbatch script and pickles what the job runs: a
:class:`WorkerJob`, which runs the ``tuner worker`` command (the entry function it is
named: tuner.cli's) in the job's own process on the node, with the sweep's overrides. The
jobs form one array (one id, a task per job), named ``tuner-<study>`` so that a later
command finds them in the queue.

Signals. SLURM sends SIGTERM to every process of a job when it is cancelled, preempted,
or ``launcher.signal_s`` seconds before its time limit (``--signal=TERM@...``), and
SIGKILL a grace period later. A worker takes SIGTERM as Ctrl-C: its running trials save a
checkpoint, are marked interrupted and their runs ended (tuner.app.watch, tuner.launch.slot).
Then, with ``launcher.requeue``, a job that SLURM still counts as RUNNING (the time-limit
warning; a cancelled job is CANCELLED, a preempted one is requeued by SLURM itself) puts
itself back in the queue: started again, its worker resumes the interrupted trials from
their checkpoints, wherever they are claimed.

A trial across nodes (``launcher.nodes_per_trial`` > 1): the job has that many nodes, one
task each, and each task runs torchrun with the c10d rendezvous on the job's first node;
the ranks are tuner worker's own under torchrun (tuner.launch.torchrun).
"""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from dataclasses import dataclass

from tuner.config.plan import SweepPlan
from tuner.core.exits import INTERRUPTED_EXIT
from tuner.launch.slurm_cluster import first_node_address, job_state, requeue

RDZV_PORTS = (20000, 40000)  # a job's rendezvous port, from its id: jobs sharing a node differ


def job_name(study_name: str) -> str:
    return f"tuner-{study_name}"


@dataclass(frozen=True)
class WorkerJob:
    """What each SLURM job runs, on its node (pickled by submitit)."""

    entry: str  # "module:function" of the `tuner` command's main (tuner.cli:main), run
    # in-process, as a console script names its function
    argv: tuple[str, ...]  # ("worker", ...overrides)
    nodes_per_trial: int
    devices_per_trial: int
    requeue: bool

    def __call__(self) -> int:
        if self.nodes_per_trial > 1:
            code = self._torchrun()
        else:
            code = pkgutil.resolve_name(self.entry)(list(self.argv))
        if code == INTERRUPTED_EXIT and self.requeue and _task() == 0:
            job = _job_id()
            state = job_state(job)
            if state == "RUNNING":  # warned before the time limit: not cancelled, not preempted
                print(f"requeueing job {job}: its trials resume from their checkpoints",
                      flush=True)
                requeue(job)
                return 0
        if code != 0:
            raise SystemExit(code)  # the job ends FAILED, its log says why
        return 0

    def _torchrun(self) -> int:
        """This node's part of a trial across the job's nodes: torchrun, which starts
        ``devices_per_trial`` ranks here and meets the other nodes' on the first."""
        job = _job_id()
        low, high = RDZV_PORTS
        port = low + int(os.environ["SLURM_JOB_ID"]) % (high - low)
        command = [sys.executable, "-m", "torch.distributed.run",
                   f"--nnodes={self.nodes_per_trial}",
                   f"--nproc-per-node={self.devices_per_trial}",
                   "--rdzv-backend=c10d", f"--rdzv-endpoint={first_node_address()}:{port}",
                   f"--rdzv-id=tuner-{job}", "-m", "tuner", *self.argv]
        # SLURM signals torchrun and its ranks itself; this process only waits.
        return subprocess.call(command)


def _job_id() -> str:
    """This job's id as squeue shows it (array tasks as 123_4)."""
    env = os.environ
    if "SLURM_ARRAY_JOB_ID" in env:
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env["SLURM_JOB_ID"]


def _task() -> int:
    return int(os.environ.get("SLURM_PROCID", "0"))


def submit_workers(plan: SweepPlan, job: WorkerJob) -> list[str]:
    """Submit ``plan.slurm.jobs`` jobs running ``job``; their ids."""
    import submitit

    launcher = plan.slurm
    assert launcher is not None
    executor = submitit.SlurmExecutor(folder=launcher.folder)
    extra = {"signal": f"TERM@{launcher.signal_s}",
             "requeue" if launcher.requeue else "no-requeue": True,
             **launcher.sbatch}
    parameters = {"job_name": job_name(plan.study_name), "time": launcher.time_min,
                  "nodes": launcher.nodes_per_trial, "ntasks_per_node": 1,
                  "signal_delay_s": launcher.signal_s, "setup": list(launcher.setup),
                  "additional_parameters": extra}
    for key, value in (("partition", launcher.partition), ("account", launcher.account),
                       ("cpus_per_task", launcher.cpus_per_node), ("mem", launcher.mem),
                       ("gpus_per_node", launcher.gpus_per_node or None)):
        if value is not None:
            parameters[key] = value
    executor.update_parameters(**parameters)
    with executor.batch():
        jobs = [executor.submit(job) for _ in range(launcher.jobs)]
    return [j.job_id for j in jobs]


def log_tail(plan: SweepPlan, job_id: str, lines: int = 15) -> str:
    """The end of a job's error log (submitit's ``<id>_0_log.err``), for a job that ended
    early."""
    assert plan.slurm is not None
    path = os.path.join(plan.slurm.folder, f"{job_id}_0_log.err")
    try:
        with open(path, errors="replace") as log:
            return "".join(log.readlines()[-lines:])
    except OSError:
        return f"(no log at {path})"

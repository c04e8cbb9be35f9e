"""What tuner asks a SLURM cluster, through its own commands (sinfo, squeue, scontrol).

No accounting is assumed (``sacct`` needs slurmdbd, which many small clusters lack):
job states come from ``squeue`` while a job is known to the controller, and a job that
left the queue has ended. Each call is bounded: a controller that does not answer is an
error that says so, never a hang.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable

from tuner.config.launcher import SlurmLauncher
from tuner.core.errors import ConfigError, Problem

COMMAND_TIMEOUT_S = 30
# States in which a job holds (or waits for) resources: it is not over.
LIVE_STATES = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED",
                         "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "SIGNALING",
                         "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD", "PREEMPTED"})


class SlurmError(RuntimeError):
    """A SLURM command failed (its own message included)."""


def slurm(*argv: str) -> str:
    """Run a SLURM command; its standard output. Raises SlurmError on failure."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT_S)
    except FileNotFoundError as error:
        raise SlurmError(f"{argv[0]} is not on the PATH") from error
    except subprocess.TimeoutExpired as error:
        raise SlurmError(f"`{' '.join(argv)}` did not answer in {COMMAND_TIMEOUT_S} s "
                         "(is slurmctld up?)") from error
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip()
        raise SlurmError(f"`{' '.join(argv)}` failed (exit {done.returncode}): {said}")
    return done.stdout


def check_cluster(launcher: SlurmLauncher, locate: Callable[[str], str]) -> None:
    """What only the cluster knows, asked before anything is written or submitted:
    sbatch is there, the controller answers, the partition exists and has the nodes a
    job asks for. ``locate``: where a config key came from (the plan's). Raises
    ConfigError."""
    for command in ("sbatch", "squeue", "scontrol", "sinfo"):
        if shutil.which(command) is None:
            raise ConfigError(Problem(
                locate("launcher"), "launcher", f"{command} is not on the PATH: launcher=slurm "
                "submits jobs from a machine where SLURM's commands work (a login node)",
                "run tuner sweep there, or put SLURM's bin folder on the PATH"))
    try:
        table = slurm("sinfo", "--noheader", "--format=%P %D")
    except SlurmError as error:
        raise ConfigError(Problem(locate("launcher"), "launcher",
                                  f"the cluster does not answer: {error}",
                                  "check that slurmctld runs (and SLURM_CONF, if set)")) from None
    partitions: dict[str, int] = {}
    default = None
    for line in table.splitlines():
        name, count = line.split()
        if name.endswith("*"):
            name = default = name[:-1]
        partitions[name] = partitions.get(name, 0) + int(count)
    wanted = launcher.partition or default
    if wanted is None:
        raise ConfigError(Problem(locate("launcher.partition"), "launcher.partition",
                                  "is null, and the cluster has no default partition",
                                  f"name one: launcher.partition=... ({', '.join(partitions)})"))
    if wanted not in partitions:
        raise ConfigError(Problem(
            locate("launcher.partition"), "launcher.partition",
            f"{wanted!r} is not a partition of this cluster "
            f"(sinfo lists {', '.join(sorted(partitions)) or 'none'})",
            "name one of those, or null for the default"))
    if launcher.nodes_per_trial > partitions[wanted]:
        raise ConfigError(Problem(
            locate("launcher.nodes_per_trial"), "launcher.nodes_per_trial",
            f"is {launcher.nodes_per_trial}, but partition {wanted!r} has "
            f"{partitions[wanted]} node(s): a job of that many nodes would never start",
            f"set launcher.nodes_per_trial to {partitions[wanted]} or fewer"))


def live_jobs(name: str) -> dict[str, str]:
    """Jobs named ``name`` the controller still holds, not ended: id -> state
    (array tasks one by one, as ``123_0``)."""
    out = slurm("squeue", "--noheader", "--array", f"--name={name}", "--format=%i %T")
    jobs = {}
    for line in out.splitlines():
        job_id, state = line.split()
        if state in LIVE_STATES:
            jobs[job_id] = state
    return jobs


def job_state(job_id: str) -> str | None:
    """A job's state (RUNNING, CANCELLED, ...) from ``scontrol show job``; None when the
    controller does not know it any more."""
    try:
        out = slurm("scontrol", "--oneliner", "show", "job", job_id)
    except SlurmError:
        return None
    for field in out.split():
        if field.startswith("JobState="):
            return field.split("=", 1)[1]
    return None


def requeue(job_id: str) -> None:
    """Put a running job back in the queue: SLURM ends it and starts it again."""
    slurm("scontrol", "requeue", job_id)


def first_node_address() -> str:
    """The address of this job's first node (where a trial's rendezvous listens): its
    NodeAddr, which is its name unless the cluster says otherwise."""
    nodelist = os.environ["SLURM_JOB_NODELIST"]
    first = slurm("scontrol", "show", "hostnames", nodelist).split()[0]
    for field in slurm("scontrol", "--oneliner", "show", "node", first).split():
        if field.startswith("NodeAddr="):
            return field.split("=", 1)[1]
    return first

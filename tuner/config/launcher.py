"""The ``launcher`` group: where a sweep's trials train.

``launcher=local`` (the default): this machine's slots. ``launcher=slurm``: jobs on a
SLURM cluster, each running ``tuner worker`` (tuner.app.slurm_sweep submits and follows
them). What can be checked from the config alone is checked here, before anything is
written or submitted: the jobs must reach the study and the records through the network
(or a filesystem every node shares, said explicitly), the node counts must make whole
jobs, and a job must live long enough to save a checkpoint before SLURM's warning. What
needs the cluster (sbatch on the PATH, the partition) is asked of it just before the
submission (tuner.launch.slurm).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tuner.config.compose import Composed
from tuner.core.errors import Problem

KINDS = ("local", "slurm")
EMBEDDED_URLS = ("sqlite:", "file:")
Need = Callable[[bool, str, str, str], None]  # (ok, key, what is wrong, fix): a problem unless ok


@dataclass(frozen=True)
class SlurmLauncher:
    """A checked ``launcher=slurm``: what each job asks SLURM for, and how many."""

    nodes: int  # nodes training the study at once
    nodes_per_trial: int  # nodes one trial spans (>1: torchrun across them)
    gpus_per_node: int
    cpus_per_node: int | None
    mem: str | None
    time_min: int  # each job's time limit
    partition: str | None
    account: str | None
    signal_s: int  # SIGTERM this long before the time limit
    requeue: bool
    sbatch: dict[str, Any]
    setup: tuple[str, ...]
    folder: str

    @property
    def jobs(self) -> int:
        return self.nodes // self.nodes_per_trial


def slurm_launcher(composed: Composed, problems: list[Problem]) -> SlurmLauncher | None:
    """The plan's SLURM launcher; None for ``launcher=local`` or when ``problems`` grew."""
    cfg = composed.cfg
    launcher = cfg.launcher
    kind = launcher.kind
    if kind not in KINDS:
        problems.append(Problem(composed.locate("launcher.kind"), "launcher.kind",
                                f"unknown launcher {kind!r}", "use launcher=local or "
                                "launcher=slurm"))
        return None
    if kind == "local":
        return None
    before = len(problems)

    def need(ok: bool, key: str, message: str, fix: str) -> None:
        if not ok:
            problems.append(Problem(composed.locate(key), key, message, fix))

    _reachable(cfg, need)
    _counts(launcher, need)
    if len(problems) > before:
        return None
    _layout(cfg, need)
    _time_limit(cfg, need)
    if len(problems) > before:
        return None
    return SlurmLauncher(
        nodes=launcher.nodes, nodes_per_trial=launcher.nodes_per_trial,
        gpus_per_node=launcher.gpus_per_node, cpus_per_node=launcher.cpus_per_node,
        mem=launcher.mem, time_min=launcher.time, partition=launcher.partition,
        account=launcher.account, signal_s=launcher.signal_s, requeue=launcher.requeue,
        sbatch=dict(launcher.sbatch), setup=tuple(launcher.setup),
        folder=launcher.folder or f"{cfg.run_dir}/slurm/{cfg.study_name}")


def _counts(launcher, need: Need) -> None:
    for key in ("nodes", "nodes_per_trial", "time"):
        need(launcher[key] >= 1, f"launcher.{key}", f"must be at least 1, got {launcher[key]}",
             f"set launcher.{key} to 1 or more")
    need(launcher.gpus_per_node >= 0, "launcher.gpus_per_node",
         f"must be 0 or more, got {launcher.gpus_per_node}", "e.g. launcher.gpus_per_node=8")
    need(launcher.cpus_per_node is None or launcher.cpus_per_node >= 1,
         "launcher.cpus_per_node", f"must be at least 1, got {launcher.cpus_per_node}",
         "e.g. launcher.cpus_per_node=16, or null for the partition's default")
    need(launcher.signal_s >= 0, "launcher.signal_s", f"must be seconds >= 0, got "
         f"{launcher.signal_s}", "e.g. launcher.signal_s=120")


def _layout(cfg, need: Need) -> None:
    """Whole jobs, and trials that fit them."""
    launcher = cfg.launcher
    need(launcher.nodes % launcher.nodes_per_trial == 0, "launcher.nodes",
         f"is {launcher.nodes}, which is not a whole number of jobs of "
         f"launcher.nodes_per_trial={launcher.nodes_per_trial} nodes each (the torchrun "
         "layout of a trial is one task per node of its job)",
         f"set launcher.nodes to a multiple of {launcher.nodes_per_trial}")
    if launcher.nodes_per_trial > 1:
        need(cfg.slots in ("auto", 1), "slots",
             f"is {cfg.slots}, but a trial across nodes uses every device of its job",
             "leave slots=auto")
    if launcher.gpus_per_node:
        need(cfg.devices_per_trial <= launcher.gpus_per_node, "devices_per_trial",
             f"is {cfg.devices_per_trial}, more than launcher.gpus_per_node="
             f"{launcher.gpus_per_node}", "ask for more GPUs per node, or fewer per trial")


def _time_limit(cfg, need: Need) -> None:
    """A job lives long enough to save a checkpoint before SLURM's warning."""
    launcher = cfg.launcher
    seconds = launcher.time * 60
    if launcher.signal_s >= seconds:
        need(False, "launcher.signal_s",
             f"is {launcher.signal_s} s, not less than the job's time limit ({seconds} s)",
             "lower launcher.signal_s, or raise launcher.time (minutes)")
        return
    interval = cfg.resume_checkpoint_s
    if interval is not None:
        need(seconds - launcher.signal_s > interval, "launcher.time",
             f"is {launcher.time} min: SLURM warns a job {launcher.signal_s} s before, so a "
             f"trial trains {seconds - launcher.signal_s} s at most, not longer than "
             f"resume_checkpoint_s={interval:g}: it would be stopped before its first "
             "checkpoint and start over each time",
             f"raise launcher.time, or lower resume_checkpoint_s below "
             f"{seconds - launcher.signal_s}")


def _reachable(cfg, need: Need) -> None:
    """The study and the records must be reachable from the cluster's nodes."""
    if cfg.launcher.shared_fs:
        return
    need(not _embedded_storage(cfg.storage), "storage",
         "keeps the study in a file on this machine (journal or SQLite), which the "
         "cluster's nodes do not see",
         "use storage=postgres (PGHOST and PGPASSWORD in the environment, which sbatch "
         "passes on to the jobs), or launcher.shared_fs=true if run_dir is on a "
         "filesystem every node shares")
    need(not str(cfg.tracking.tracking_uri).startswith(EMBEDDED_URLS)
         and "://" in str(cfg.tracking.tracking_uri), "tracking",
         f"records to {cfg.tracking.tracking_uri}, a file on this machine, which the "
         "cluster's nodes do not see",
         "use tracking=server (MLFLOW_TRACKING_URI in the environment), or "
         "launcher.shared_fs=true if run_dir is on a filesystem every node shares")


def _embedded_storage(storage) -> bool:
    """Whether the Optuna storage is a file of this machine (journal or SQLite)."""
    if "JournalStorage" in str(storage.get("_target_", "")):
        return True
    return str(storage.get("url", "")).startswith(EMBEDDED_URLS)

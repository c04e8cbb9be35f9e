"""``tuner worker`` under torchrun: trials that span several machines.

torchrun (alone, or started by ``srun`` on SLURM) starts the same command on every
process of every node and puts the layout in the environment (RANK, WORLD_SIZE,
LOCAL_WORLD_SIZE, MASTER_ADDR, ...; tuner.config.machine reads it). tuner then does not
start slots: the processes are the ranks. Global rank 0 is the trial's owner and the
only one that claims trials: it runs the driver and a slot in one process (the worker's
``lead``, tuner.app.worker), and for each trial broadcasts the trial to the other ranks
(:func:`lead`), which train it with it (:func:`tuner.launch.rank.run_rank`). When rank
0's loop ends, for whatever reason, it broadcasts "stop" and every process exits.

Lightning finds torchrun's environment by itself and, since the process group already
exists, reuses it: ``num_nodes`` and ``devices`` come from torchrun, not from the config.
If one rank dies, torchrun ends the job on every node (its default); the trial it was
training is reaped by lease (tuner.study.leases) when a sweep or worker next claims.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace
from typing import TypeVar

from tuner.config.machine import torchrun_layout
from tuner.config.plan import SweepPlan
from tuner.core.errors import ConfigError, Problem

# Broadcast waits as long as a trial takes; torch's 30-minute default would cut them off.
COLLECTIVE_TIMEOUT = timedelta(days=7)
_control = SimpleNamespace(group=None)  # the process group for tuner's own messages

T = TypeVar("T")


def run(plan: SweepPlan, lead_worker: Callable[[], T]) -> T | None:
    """This process's part of the job: ``lead_worker()``'s result on rank 0 (which claims
    and trains trials), None on the others (which follow rank 0's trials)."""
    import torch.distributed as dist

    rank, _, local = torchrun_layout()
    if plan.cfg.devices_per_trial != local:
        raise ConfigError(Problem(plan.locate("devices_per_trial"), "devices_per_trial",
                                  f"is {plan.cfg.devices_per_trial} but torchrun started "
                                  f"{local} process(es) per node",
                                  f"set devices_per_trial={local} (or --nproc-per-node)"))
    cuda = plan.cfg.trainer.accelerator in ("gpu", "cuda", "auto") and _has_cuda()
    dist.init_process_group("nccl" if cuda else "gloo", timeout=COLLECTIVE_TIMEOUT)
    # Objects travel over gloo whatever the training backend (NCCL moves only tensors).
    _control.group = dist.new_group(backend="gloo", timeout=COLLECTIVE_TIMEOUT)
    try:
        if rank != 0:
            _follow()
            return None
        try:
            return lead_worker()
        finally:
            _broadcast(None)  # the other ranks stop, whatever stopped rank 0
    finally:
        dist.destroy_process_group()


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _overrides() -> dict:
    """Lightning's layout for a rank: torchrun's, not the config's."""
    _, world, local = torchrun_layout()
    return {"num_nodes": world // local, "devices": local}


def lead(spec: dict, rows: Callable[[list], None]) -> int:
    """Rank 0's side of one trial: send it to the other ranks, train rank 0's part, its
    metric batches to ``rows``. Returns 0; the outcome is in the files rank 0 wrote (as
    for ranks a slot starts)."""
    from tuner.launch.rank import run_rank

    _broadcast(spec)
    try:
        run_rank(spec, 0, rows, **_overrides())
    except Exception:
        return 1
    finally:
        _barrier()  # every rank has written its report before rank 0 reads them
    return 0


def _follow() -> None:
    from tuner.launch.rank import run_rank

    rank, _, _ = torchrun_layout()
    while (spec := _broadcast(None)) is not None:
        try:
            run_rank(spec, rank, None, **_overrides())
        finally:
            _barrier()


def _barrier() -> None:
    import torch.distributed as dist

    dist.barrier(group=_control.group)


def _broadcast(payload):
    import torch.distributed as dist

    box = [payload]
    dist.broadcast_object_list(box, src=0, group=_control.group)
    return box[0]

"""``tuner worker`` under torchrun: trials that span several machines.

torchrun (alone, or started by ``srun`` on SLURM) starts the same command on every
process of every node and puts the layout in the environment (RANK, WORLD_SIZE,
LOCAL_WORLD_SIZE, MASTER_ADDR, ...). tuner then does not start slots: the processes
are the ranks. Global rank 0 is the trial's owner and the only one that claims trials:
it runs the ordinary slot loop (:class:`tuner.slot.Slot`) in-process, and for each trial
broadcasts the trial's address to the other ranks, which rebuild the same trial from
the study by id and train it with it (:func:`tuner.rank.run_rank`). When the budget is
spent, rank 0 broadcasts "stop" and every process exits.

Lightning finds torchrun's environment by itself and, since the process group already
exists, reuses it: ``num_nodes`` and ``devices`` come from torchrun, not from the config.
If one rank dies, torchrun ends the job on every node (its default); the trial it was
training is reaped by lease (tuner.leases) when a sweep or worker next claims.
"""

from __future__ import annotations

import os
from datetime import timedelta
from types import SimpleNamespace

from tuner.errors import ConfigError, Problem

# Broadcast waits as long as a trial takes; torch's 30-minute default would cut them off.
COLLECTIVE_TIMEOUT = timedelta(days=7)
_control = SimpleNamespace(group=None)  # the process group for tuner's own messages


def launched() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ


def nodes() -> int:
    if not launched():
        return 1
    return int(os.environ["WORLD_SIZE"]) // int(os.environ["LOCAL_WORLD_SIZE"])


def _layout() -> tuple[int, int, int]:
    env = os.environ
    return int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_WORLD_SIZE"])


def _overrides() -> dict:
    _, world, local = _layout()
    return {"num_nodes": world // local, "devices": local}


def run(plan, reporter, wait: float = 0.0):
    """The worker on this process; returns a WorkerOutcome on rank 0, None elsewhere."""
    import torch.distributed as dist

    rank, _, local = _layout()
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
        return _lead_worker(plan, reporter, wait) if rank == 0 else _follow()
    finally:
        dist.destroy_process_group()


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _lead_worker(plan, reporter, wait: float):
    import time
    from collections import Counter

    from tuner.devices import SlotSpec, cpu_cores
    from tuner.slot import CONTINUE, Finished, Go, Slot
    from tuner.study import join_study, open_storage, wait_for_journal
    from tuner.sweep import WorkerOutcome, tally
    from tuner.tracking.runs import Tracker

    wait = wait_for_journal(plan, wait)
    study = join_study(plan, open_storage(plan.cfg.storage), wait)
    tracker = Tracker(plan.cfg.tracking, plan.study_name)
    tracker.join(study)
    trained: Counter[str] = Counter()

    class Channel:
        """What a slot would send its driver, shown here; the driver's answers."""

        def send(self, message) -> None:
            if isinstance(message, Finished):
                trained[message.result.state.name] += 1
                counts, _ = tally(study, plan)
                reporter.trial_done(message.result, plan.metrics, counts)

        def poll(self) -> bool:
            return False

        def recv(self) -> str:
            return CONTINUE

    deadline = None if plan.cfg.timeout is None else time.time() + plan.cfg.timeout
    go = Go(tracker.experiment_id, tracker.parent_run_id, deadline)
    local = int(os.environ["LOCAL_WORLD_SIZE"])
    slot = Slot(plan, SlotSpec(0, None, max(1, cpu_cores() // local)), Channel(), go)
    try:
        reason = slot.run()
    finally:
        _broadcast(None)  # the other ranks stop, whatever stopped rank 0
        reporter.stop()
    return WorkerOutcome(study, sum(trained.values()), reason)


def lead(spec: dict) -> int:
    """Rank 0's side of one trial: send its address, train rank 0's part. Returns 0; the
    outcome is in the files rank 0 wrote (as for ranks a slot starts)."""
    from tuner.rank import run_rank

    _broadcast(spec)
    try:
        run_rank(spec, 0, **_overrides())
    except Exception:
        return 1
    finally:
        _barrier()  # every rank has written its report before rank 0 reads them
    return 0


def _follow() -> None:
    from tuner.rank import run_rank

    rank = int(os.environ["RANK"])
    while (spec := _broadcast(None)) is not None:
        try:
            run_rank(spec, rank, **_overrides())
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

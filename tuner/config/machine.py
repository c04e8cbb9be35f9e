"""The machine a sweep runs on: its devices, how they are cut into slots, and the
layout torchrun (or SLURM's srun) gives a process.

Which devices and how many CPU threads each slot gets:

GPU slots: the visible GPUs are cut into disjoint groups of ``devices_per_trial``; a slot
sees only its group (``CUDA_VISIBLE_DEVICES``), so two trials never land on one GPU by
accident, and Lightning's ``devices=k`` inside the slot means "my k GPUs". With
``devices_per_trial=1`` and ``slots_per_gpu=m``, m slots share each GPU: small models
leave most of a GPU idle, and packing them is the cheapest speed-up there is.

CPU slots split the cores: each trial process gets ``cores // (slots x processes per
trial)`` torch threads (at least one), so slots do not oversubscribe the machine. With
``slots=auto`` a CPU machine runs one slot per core (per ``devices_per_trial`` cores
for DDP trials), as many as fit in the available memory, and never more than
``n_trials``: the small models people tune on CPU use one core about as well as two
(torch's intra-op threads barely speed up a matrix of a few hundred columns), so two
trials on two cores finish ~1.4-1.8x more trials per minute than one trial with both
(docs/benchmarks.md, section 5).

Under torchrun every process of every node runs ``tuner worker``, and the layout is in
the environment (RANK, WORLD_SIZE, LOCAL_WORLD_SIZE); :func:`nodes` reads how many
machines one trial spans (tuner.launch.torchrun).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig


@dataclass(frozen=True)
class SlotSpec:
    index: int
    gpus: tuple[str, ...] | None  # this slot's CUDA_VISIBLE_DEVICES; None: a CPU slot
    threads: int  # torch intra-op threads for each process of a trial


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def visible_gpus() -> list[str]:
    """GPU ids this process may use, without initialising CUDA (or importing torch when
    the machine has no NVIDIA driver at all)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip() and d.strip() != "-1"]
    if not Path("/proc/driver/nvidia").exists():
        return []
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def uses_gpus(accelerator: str) -> bool:
    if accelerator in ("gpu", "cuda"):
        return True
    return accelerator == "auto" and bool(visible_gpus())


def slot_specs(cfg: DictConfig) -> list[SlotSpec]:
    """The slots this machine runs for ``cfg``; ValueError says which key is wrong."""
    k, per_gpu, slots = cfg.devices_per_trial, cfg.slots_per_gpu, cfg.slots
    if uses_gpus(str(cfg.trainer.accelerator)):
        gpus = visible_gpus()
        groups = [tuple(gpus[i:i + k]) for i in range(0, len(gpus) - k + 1, k)]
        if not groups:
            raise ValueError(f"devices_per_trial={k} but {len(gpus)} GPU(s) are visible")
        places = [g for g in groups for _ in range(per_gpu)] if k == 1 else groups
        n = len(places) if slots == "auto" else slots
        if n > len(places):
            raise ValueError(f"slots={n} but {len(gpus)} GPU(s) hold {len(places)} "
                             f"slot(s) of {k} GPU(s) x {per_gpu} per GPU")
        # Spread over GPUs first: slot i takes place i of a GPU-major interleaving.
        order = sorted(range(len(places)), key=lambda i: (i % per_gpu, i // per_gpu))
        return [SlotSpec(i, places[order[i]], max(1, cpu_cores() // n)) for i in range(n)]
    n = auto_cpu_slots(k, cfg.n_trials) if slots == "auto" else slots
    return [SlotSpec(i, None, max(1, cpu_cores() // (n * k))) for i in range(n)]


SLOT_MEMORY = 1 << 30  # bytes one CPU slot may need: torch + Lightning ~0.4 GB, data, model


def auto_cpu_slots(processes_per_trial: int, n_trials: int) -> int:
    """``slots=auto`` on CPU: a slot per ``processes_per_trial`` cores, as many as the
    available memory holds, at most ``n_trials``, at least one."""
    by_cores = cpu_cores() // processes_per_trial
    by_memory = available_memory() // (SLOT_MEMORY * processes_per_trial)
    return max(1, min(by_cores, by_memory, n_trials))


def available_memory() -> int:
    """Bytes the kernel says new processes can use (MemAvailable), or a lot if unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # not Linux
        pass
    return 1 << 50


def launched_by_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ


def torchrun_layout() -> tuple[int, int, int]:
    """This process's global rank, the world size and the processes per node."""
    env = os.environ
    return int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_WORLD_SIZE"])


def nodes() -> int:
    """Machines one trial spans: 1 unless torchrun started this process on several."""
    if not launched_by_torchrun():
        return 1
    _, world, local = torchrun_layout()
    return world // local

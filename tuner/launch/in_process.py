"""A slot in the driver's own process: rank 0 under torchrun, whose process is the
trial's rank 0 on this node, trains its trials where its driver runs.

It is served in the driver's main thread (signals land there) and passes its metric
batches straight to the run writer; there is no process to replace or to stop. It
trains when the driver asks for the outcome, so the next trial is claimed (its run
made) first.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import optuna

from tuner.config.machine import SlotSpec
from tuner.config.plan import SweepPlan
from tuner.core.results import TrialResult
from tuner.launch.training_slot import MetricWrite
from tuner.trial.order import Order


class InProcessSlot:
    def __init__(self, plan: SweepPlan, spec: SlotSpec, study: optuna.Study):
        from tuner.trial.build import prepare_process

        self.plan, self.spec, self.study = plan, spec, study
        self.index, self.pid = spec.index, os.getpid()
        prepare_process(spec.threads)

    def begin(self, order: Order) -> None:
        pass  # it trains in outcome(), in this very thread

    def outcome(self, order: Order, write_metrics: MetricWrite, say: Callable[[str], None]
                ) -> TrialResult:
        from tuner.launch.ddp import fit_in_ranks
        from tuner.trial.train import train

        return train(self.plan, order, self.study,
                     lambda number, rows: write_metrics(rows, None), fit_in_ranks)

    def replace(self) -> None:
        raise RuntimeError("a slot in the driver's own process cannot be replaced")

    def idle(self) -> None:
        pass

    def stop_now(self) -> None:
        pass  # the signal that interrupts the driver interrupts this slot's trial too

"""The first seconds of a sweep or a worker: check the services, then start the slots.

A slot spends seconds importing torch and Lightning before it can run the preflight, so
it starts as soon as the config is known and the services it will write to answer; the
driver imports MLflow meanwhile (tuner.app.sweep). The checks come first so that a tracking
server or database that is down is refused at once, with nothing started. Nothing is
written until the preflight passes.
"""

from __future__ import annotations

from tuner.config.machine import slot_specs
from tuner.config.plan import SweepPlan
from tuner.launch.pool import SlotPool
from tuner.study.storage import check_storage
from tuner.tracking.server import check_tracking_server
from tuner.tracking.store_check import check_local_store


def check_services(plan: SweepPlan) -> None:
    """Raise ConfigError unless the MLflow tracking server and the study's database (if
    the config names any) answer, and a local MLflow store is whole."""
    check_tracking_server(plan.cfg.tracking.tracking_uri, plan.locate("tracking"))
    check_local_store(plan.cfg.tracking.tracking_uri, plan.locate("tracking"))
    check_storage(plan.cfg.storage, plan.locate("storage.url"))


def start_slots(plan: SweepPlan) -> SlotPool:
    """Check the services, then start the slot processes; the caller stops them (the
    pool is a context manager)."""
    check_services(plan)
    return SlotPool(plan, slot_specs(plan.cfg)).start()

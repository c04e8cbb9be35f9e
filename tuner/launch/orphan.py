"""A slot whose driver died while it trained: it ends its trial as the driver would have.

The driver writes its slots' MLflow records and tells Optuna how their trials end. If
it is killed (SIGKILL, say) while a trial trains, the slot notices
(tuner.launch.driver_line.DriverWatch), stops the trial, imports MLflow (only now),
writes the metric batches the driver had not confirmed (one may be written twice: MLflow's
SQL stores drop a metric point they hold already), and marks the trial FAIL
("interrupted (its driver died)") with its run KILLED, so that the next command of the
study resumes it from its checkpoint. Nothing is left RUNNING, and no epoch that Optuna
heard of is missing from the run.
"""

from __future__ import annotations

import sys

import optuna
from optuna.trial import TrialState

from tuner.config.plan import SweepPlan
from tuner.core import attrs
from tuner.core.results import MetricRow
from tuner.study.trials import fail_running
from tuner.trial.order import Order

REASON = "interrupted (its driver died)"


def end_orphaned(plan: SweepPlan, order: Order, study: optuna.Study,
                 unwritten: list[tuple[int, list[MetricRow]]]) -> None:
    from tuner.tracking.runs import Tracker

    tracker = Tracker(plan.cfg.tracking, plan.study_name)
    tracker.attach(order.experiment_id, order.parent_run_id)
    tracker.bind(order.run_id, order.number)
    for number, rows in unwritten:
        if number != order.number:
            continue
        try:
            tracker.log_metrics(order.run_id, rows)
        except Exception as error:  # one refused batch must not cost the others
            print(f"tuner: MLflow did not take a metric batch of trial {number}: {error}",
                  file=sys.stderr, flush=True)
    stored = fail_running(study, order.number, REASON)
    run_id = stored.user_attrs.get(attrs.RUN_ID_ATTR, order.run_id)
    failed = stored.state == TrialState.FAIL
    tracker.end_trial(run_id, stored.state, reason=REASON if failed else None,
                      interrupted=failed, only_if_running=True, number=order.number)

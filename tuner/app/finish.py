"""The end of a sweep's records, and ``tuner sync`` for those that waited for the server.

While the tracking server is down, what a trial writes waits in the outbox
(:mod:`tuner.tracking.outbox`) and training goes on. The end of a sweep
(:func:`finish_records`) queues its own records there too, behind the trials' (champion,
leaderboard, report, the parent run's final status), and replays the whole outbox:

- the server answers: everything is written, in order, and the outbox is empty;
- it does not: everything waits, the sweep still ends (its trials are all in Optuna),
  and ``tuner sync`` (:func:`run_sync`) writes the records once the server is back,
  ending the parent run as the sweep would have.

A worker's outbox holds only its trials' records; ``tuner sync`` on that machine writes
them (the sweep that started the study keeps the parent run).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from tuner.app.champion import crown, describe, sweep_contest
from tuner.app.pages.study_page import trial_counts
from tuner.app.report import Summary, finalize
from tuner.config.plan import SweepPlan
from tuner.core.errors import ConfigError, RecordsPending
from tuner.study.trials import best_trial
from tuner.tracking.local_store import SQLITE
from tuner.tracking.outbox import Outbox
from tuner.tracking.replay import Finalize, replay
from tuner.tracking.runs import Tracker
from tuner.tracking.server import check_tracking_server, is_server_uri
from tuner.tracking.store_check import check_local_store
from tuner.trial.weights import waiting_weights

if TYPE_CHECKING:
    import torch

DEFERRED_NOTE = "MLflow records still wait in the outbox; `tuner sync` registers it"


def rebuild_module(config_yaml: str, state_dict: dict[str, Any],
                   example_input: tuple[torch.Tensor, ...]
                   ) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    """A model that waited in the outbox, rebuilt to be logged. torch and Lightning are
    imported here, only when a model waited: the driver stays without them otherwise."""
    from tuner.trial.served import rebuild_for_serving

    return rebuild_for_serving(config_yaml, state_dict, example_input)


def finish_records(plan: SweepPlan, study: optuna.Study, tracker: Tracker, status: str,
                   phase: Callable[[str], None] = lambda text: None) -> Summary:
    """The end of a sweep: champion, leaderboard, report, and the parent run ended with
    ``status``; or, with a tracking server that does not answer, all of it waiting in the
    outbox (the summary then says how many records wait). ``phase``: told each step."""
    client = tracker.client
    if client.outbox is None:  # a store with no outbox (given as a path): written directly
        summary = finalize(plan, study, tracker, phase)
        tracker.close(status)
        return summary
    client.breaker.try_now()  # the store may be back before the pause ends: try it now
    client.queue(tracker.parent_run_id, {"op": "finalize", "status": status})
    summaries: list[Summary] = []
    replay(client, study, _finalizer(plan, study, tracker, summaries, phase),
           rebuild=rebuild_module)
    if summaries:
        client.outbox.tidy()
        return summaries[-1]
    return Summary(best_trial(study), None, DEFERRED_NOTE, trial_counts(study),
                   pending=client.outbox.count())


def finish_worker_records(study: optuna.Study, tracker: Tracker) -> int:
    """The end of ``tuner worker``: replay its trials' waiting records; how many wait."""
    client = tracker.client
    if client.outbox is None:
        return 0
    replay(client, study, rebuild=rebuild_module)
    pending = client.outbox.count()
    if not pending:
        client.outbox.tidy()
    return pending


def _existing_study(plan: SweepPlan) -> optuna.Study | None:
    """The plan's study, or None when its storage has no study of that name."""
    from tuner.app.lookup import load_study

    try:
        return load_study(plan.composed)
    except ConfigError:
        return None


def _export_left_weights(study: optuna.Study, tracker: Tracker) -> str | None:
    from tuner.trial.model import export_best  # imports torch: only when weights wait

    return export_best(study, tracker)


def _finalizer(plan: SweepPlan, study: optuna.Study, tracker: Tracker,
               into: list[Summary], phase: Callable[[str], None] = lambda text: None
               ) -> Finalize:
    def run(status: str) -> None:
        into.append(finalize(plan, study, tracker, phase))
        tracker.close(status)

    return run


def run_sync(plan: SweepPlan, say: Callable[[str], None]) -> None:
    """``tuner sync``: export the best model from weights that a sweep which did not reach
    its end left on this machine (tuner.trial.model), and move the champion; write every
    record the outbox holds for the study.

    Raises :class:`RecordsPending` when the server does not answer (nothing is touched)
    or when records are left (a trial still RUNNING, a record the server refuses)."""
    tracking = plan.cfg.tracking
    outbox = (Outbox(Path(tracking.outbox_dir), plan.study_name)
              if tracking.get("outbox_dir") and (is_server_uri(tracking.tracking_uri)
                                                 or tracking.tracking_uri.startswith(SQLITE))
              else None)
    waiting = outbox.count() if outbox is not None and outbox.pending_keys() else 0
    study = _existing_study(plan)
    weights_left = study is not None and waiting_weights(study) is not None
    if not waiting and not weights_left:
        where = outbox.dir if outbox is not None else "the outbox (this store has none)"
        say(f"nothing to sync: no MLflow records wait in {where}, and no trained weights "
            "wait to be exported")
        return
    try:
        check_tracking_server(tracking.tracking_uri, plan.locate("tracking"))
    except ConfigError as error:
        what = (f"{waiting} MLflow record(s) wait in {outbox.dir}" if waiting
                else "the best trial's weights wait to be exported")
        raise RecordsPending(f"{error}\n{what}, untouched: run `tuner sync` again once the "
                             "server answers") from None
    check_local_store(tracking.tracking_uri, plan.locate("tracking"))
    if study is None:
        from tuner.app.lookup import load_study

        study = load_study(plan.composed)  # its error lists the studies that are there
    tracker = Tracker(tracking, plan.study_name)
    tracker.join(study)
    exported = _export_left_weights(study, tracker) if weights_left else None
    if exported is not None:
        say(exported)
    summaries: list[Summary] = []
    files = []
    if waiting:
        files = replay(tracker.client, study, _finalizer(plan, study, tracker, summaries),
                       rebuild=rebuild_module)
        for done in files:
            say(done.describe())
    if exported is not None and not summaries and plan.cfg.tracking.register_champion:
        # No sweep's end waited to move it.
        say(describe(crown(plan, study, tracker.client, sweep_contest(plan))))
    if outbox is None:
        return
    left = outbox.count()
    if left:
        reasons = sorted({f.why_left for f in files if f.left})
        raise RecordsPending(f"{left} MLflow record(s) still wait in {outbox.dir}: "
                             + "; ".join(reasons or ["the parent run waits for the trials"]))
    outbox.tidy()
    say(f"done: every waiting record is written; nothing waits in {outbox.dir}")

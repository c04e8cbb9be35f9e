"""Writing the outbox's records to the tracking server once it answers again.

Who replays: the driver after each trial ends (:func:`catch_up`, only when the outbox
holds something and the breaker lets it try), the sweep at its end, and ``tuner sync``. Files
of trials still RUNNING in the study are left alone (their slot still writes to them),
and the parent run's file waits until no trial file is left, because it ends with the
end-of-sweep records (champion, leaderboard, report), which must see every run.

Replaying a record twice must not write it twice, since a replay can be cut short
between writing a record and marking it done (:mod:`tuner.tracking.outbox`):

- ``create_run`` first looks for the trial's run (same parent run, same trial number)
  and takes it if it exists;
- params and tags are overwritten with the same values; a metric point that exists
  already (same key, step, timestamp and value) is not added again by MLflow's SQL
  stores (a server on a file store could add it twice only if replay died between the
  write and its done mark);
- ``log_model`` first looks for a model the run has logged;
- texts and artifacts overwrite the same path, and ending a run ends it again.

A record that the server refuses (not an unreachable server) stays in its file, which is
then left for later, with the reason reported (``tuner sync`` shows it; a slot does not
try that file again); replay goes on with the other files.

A model that waited is kept as weights and config; the caller passes ``rebuild``, which
turns them back into the model as it is logged (tuner.trial.served.rebuild_for_serving). Tracking
never builds models itself: that is the trial layer's, above this one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import mlflow
import optuna
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from optuna.trial import TrialState

from tuner.core import attrs
from tuner.core.results import reason_of
from tuner.tracking import tags
from tuner.tracking.breaker import is_unavailable
from tuner.tracking.links import late_attr
from tuner.tracking.outbox import PARENT, Outbox, trial_of
from tuner.tracking.resilient import end_run, is_pending

if TYPE_CHECKING:
    import torch

    from tuner.tracking.resilient import ResilientClient

Finalize = Callable[[str], None]  # runs the end-of-sweep records and ends the parent run
# (trial config YAML, state dict) -> the trained module, to log a model that waited
# A model that waited, as it is logged: (config, the trained module's weights, its example
# input) -> (the model, its example input) (tuner.trial.served.rebuild_for_serving).
Rebuild = Callable[[str, dict[str, Any], tuple["torch.Tensor", ...]],
                   tuple["torch.nn.Module", tuple["torch.Tensor", ...]]]


@dataclass
class Replayed:
    """What replay did with one file."""

    key: str
    run_id: str | None = None
    written: list[str] = field(default_factory=list)  # one phrase per record written
    left: int = 0  # records still waiting
    why_left: str = ""

    @property
    def trial(self) -> int | None:
        return trial_of(self.key)

    def describe(self) -> str:
        who = (f"trial {self.trial}" if self.trial is not None
               else "parent run" if self.key == PARENT else self.key)
        if self.run_id:
            who += f" (run {self.run_id})"
        parts = []
        if self.written:
            parts.append(", ".join(_counted(self.written)))
        if self.left:
            parts.append(f"{self.left} record(s) left: {self.why_left}")
        return f"{who}: {'; '.join(parts) or 'nothing to write'}"


def _counted(phrases: list[str]) -> list[str]:
    """["metrics", "metrics", "config.yaml"] -> ["2x metrics", "config.yaml"]."""
    counts = Counter(phrases)
    return [p if counts[p] == 1 else f"{counts[p]}x {p}" for p in dict.fromkeys(phrases)]


class _Stop(Exception):
    """The server became unreachable: stop replaying, everything left stays."""


def catch_up(client: ResilientClient, study: optuna.Study, rebuild: Rebuild | None) -> None:
    """The driver, once a trial ended: replay finished trials' records if the outbox
    holds any and the breaker allows a try. Costs a directory listing otherwise."""
    if client.outbox is None or not client.outbox.pending_keys():
        return
    if not client.breaker.allows_try():
        return
    replay(client, study, rebuild=rebuild, retry_refused=False)


def replay(client: ResilientClient, study: optuna.Study, finalize: Finalize | None = None,
           *, rebuild: Rebuild | None = None, retry_refused: bool = True) -> list[Replayed]:
    """Replay every file it may (see the module docstring); one :class:`Replayed` per
    file looked at. Without ``finalize`` the parent run's file is left alone; without
    ``retry_refused``, so are files in which this process had a record refused; without
    ``rebuild``, a model that waited stays waiting (refused, with the reason)."""
    outbox = client.outbox
    if outbox is None:
        return []
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    results: list[Replayed] = []
    for key in outbox.pending_keys():
        number = trial_of(key)
        if key == PARENT:
            if finalize is None or any(r.left for r in results):
                continue
        elif key in client.refused and not retry_refused:
            continue
        elif number is not None and states.get(number) == TrialState.RUNNING:
            results.append(Replayed(key, left=len(outbox.waiting(key)),
                                    why_left=f"trial {number} is still RUNNING in the study "
                                             "(a slot trains it, or its process died and the "
                                             "next sweep will reap it)"))
            continue
        result = Replayed(key)
        results.append(result)
        try:
            _replay_file(client, outbox, key, study, finalize, rebuild, result)
        except _Stop:
            break
    return results


def _replay_file(client: ResilientClient, outbox: Outbox, key: str, study: optuna.Study,
                 finalize: Finalize | None, rebuild: Rebuild | None, result: Replayed) -> None:
    with outbox.replaying(key) as held:
        if held is None:
            result.left, result.why_left = len(outbox.waiting(key)), "another process holds it"
            return
        records = held.pending()
        runs: dict[str, str] = {}  # pending run id -> the real one
        for i, record in enumerate(records):
            if not client.breaker.allows_try():
                result.left, result.why_left = len(records) - i, _unreachable(client)
                raise _Stop
            try:
                with client.direct():
                    phrase = _apply(client.raw, outbox, record, runs, study, finalize,
                                    rebuild, result)
            except Exception as error:
                if is_unavailable(error):
                    client.breaker.trip(error)
                    result.left, result.why_left = len(records) - i, _unreachable(client)
                    raise _Stop from error
                if record["op"] == "finalize":
                    raise  # a bug in the end-of-sweep records: show it, keep the record
                result.left = len(records) - i
                result.why_left = f"{record['op']} was refused: {reason_of(error)}"
                client.refused.add(key)
                return
            held.done(record)
            result.written.append(phrase)
        held.remove()


def _unreachable(client: ResilientClient) -> str:
    return client.breaker.absent()


# -- one record ------------------------------------------------------------------------


def _apply(client: MlflowClient, outbox: Outbox, record: dict[str, Any],
           runs: dict[str, str], study: optuna.Study, finalize: Finalize | None,
           rebuild: Rebuild | None, result: Replayed) -> str:
    op = record["op"]
    if op == "finalize":
        assert finalize is not None
        finalize(record["status"])
        return f"champion, leaderboard and report; parent run ended {record['status']}"
    if op == "create_run":
        run_id = _find_run(client, record)
        phrase = "run found (created before)"
        if run_id is None:
            run_id = client.create_run(record["experiment_id"],
                                       start_time=record["start_time"], tags=record["tags"],
                                       run_name=record["run_name"]).info.run_id
            phrase = "run created"
        runs[record["run"]] = run_id
        result.run_id = run_id
        if record["trial"] is not None:
            study.set_user_attr(late_attr(attrs.RUN_ID_ATTR, record["trial"]), run_id)
        return phrase
    run_id = _resolve(client, record, runs)
    result.run_id = run_id
    if op == "log_batch":
        client.log_batch(run_id, metrics=[Metric(k, v, ts, step) for k, v, ts, step
                                          in record["metrics"]],
                         params=[Param(k, v) for k, v in record["params"]],
                         tags=[RunTag(k, v) for k, v in record["tags"]])
        what = [name for name in ("metrics", "params", "tags") if record[name]]
        return " and ".join(what) or "nothing"
    if op == "log_text":
        client.log_text(run_id, record["text"], record["artifact_file"])
        return record["artifact_file"]  # e.g. config.yaml, error.txt
    if op == "log_artifact":
        path = outbox.file(record["file"])
        client.log_artifact(run_id, str(path), record["artifact_path"])
        return path.name
    if op == "end_run":
        ended = end_run(client, run_id, [RunTag(k, v) for k, v in record["tags"]],
                        record["status"], record["end_time"], record["only_if_running"])
        return f"ended {record['status']}" if ended else "already ended"
    if op == "log_model":
        return _log_model(client, outbox, record, run_id, study, rebuild)
    raise ValueError(f"unknown outbox operation {op!r}")


def _find_run(client: MlflowClient, record: dict[str, Any]) -> str | None:
    """The trial's run, if an earlier replay (or a request that timed out after the
    server had done it) created it: same parent run, same trial number."""
    run_tags = record.get("tags") or {}
    parent = record.get("parent") or run_tags.get(tags.PARENT_RUN)
    number = record.get("trial")
    if parent is None or number is None:
        return None
    experiment = record.get("experiment_id") or record.get("experiment")
    found = client.search_runs(
        [experiment], max_results=1,
        filter_string=f"tags.`{tags.PARENT_RUN}` = '{parent}' and "
                      f"tags.`{tags.TRIAL_NUMBER}` = '{number}'")
    return found[0].info.run_id if found else None


def _resolve(client: MlflowClient, record: dict[str, Any], runs: dict[str, str]) -> str:
    run_id = record["run"]
    if not is_pending(run_id):
        return run_id
    if run_id in runs:
        return runs[run_id]
    found = _find_run(client, record)
    if found is None:
        raise LookupError(f"no MLflow run for trial {record.get('trial')} (its create_run "
                          "record is missing)")
    runs[run_id] = found
    return found


def _log_model(client: MlflowClient, outbox: Outbox, record: dict[str, Any], run_id: str,
               study: optuna.Study, rebuild: Rebuild | None) -> str:
    """Rebuild the module from the trial's config and the kept weights, log it the way
    the trial would have (tuner.tracking.registry.log_trial_model)."""
    experiment = record.get("experiment") or client.get_run(run_id).info.experiment_id
    uri = _logged_model(client, experiment, run_id)
    if uri is None:
        if rebuild is None:
            raise RuntimeError("this process cannot rebuild the trial's model")
        from tuner.tracking.registry import log_trial_model
        from tuner.tracking.weights_file import load_weights

        state_dict, example_input = load_weights(outbox.file(record["weights"]))
        module, example_input = rebuild(record["config"], state_dict, example_input)
        mlflow.set_experiment(experiment_id=experiment)  # logged models join the active one
        uri = log_trial_model(module, example_input, run_id)
    if record["trial"] is not None:
        study.set_user_attr(late_attr(attrs.MODEL_URI_ATTR, record["trial"]), uri)
        # The note that it waited is no longer true (a late attribute cannot be deleted).
        if study.user_attrs.get(late_attr(attrs.MODEL_ERROR_ATTR, record["trial"])):
            study.set_user_attr(late_attr(attrs.MODEL_ERROR_ATTR, record["trial"]), "")
    return f"model {uri}"


def _logged_model(client: MlflowClient, experiment: str, run_id: str) -> str | None:
    models = client.search_logged_models(
        [experiment], filter_string=f"source_run_id = '{run_id}'", max_results=10)
    ready = [m for m in models if str(m.status).upper().endswith("READY")]
    return ready[0].model_uri if ready else None

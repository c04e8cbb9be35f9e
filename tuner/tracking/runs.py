"""The MLflow side of a study: its experiment, its parent run, one child run per trial.

Statuses follow the Optuna state of the trial:

============  ================================================
Optuna        MLflow run
============  ================================================
COMPLETE      FINISHED
PRUNED        FINISHED, tagged ``tuner.pruned=true``
FAIL          FAILED, with the reason in ``tuner.fail_reason``
interrupted   KILLED (Ctrl-C or SIGTERM while it trained)
============  ================================================

A repeat of a trial cut short that resumes from its checkpoint continues the trial's
run (:mod:`tuner.trial.resume`): RUNNING again, renamed after the repeat, tagged
``tuner.resumed_from_epoch``.

The parent run is found again through the study's ``mlflow_parent_run_id`` user
attribute, so re-running a sweep adds its trials under the same parent. The driver
opens it (:meth:`Tracker.open`) and writes its slots' trial runs for them
(tuner.launch.run_writer); workers on other machines and a slot exporting the best
model join it (:meth:`Tracker.join`), and a slot whose driver died attaches to it
(:meth:`Tracker.attach`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import optuna
from mlflow.entities import Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig

from tuner.core import attrs
from tuner.core.errors import ConfigError, Problem
from tuner.core.masking import mask
from tuner.core.quiet import quiet_mlflow
from tuner.core.results import MetricRow
from tuner.tracking import tags
from tuner.tracking.breaker import is_unavailable
from tuner.tracking.local_store import SQLITE, ensure_local_store
from tuner.tracking.metric_rows import log_metric_rows, logged_steps
from tuner.tracking.orphans import running_trial_runs
from tuner.tracking.outbox import PARENT
from tuner.tracking.resilient import is_pending, resilient_client

if TYPE_CHECKING:
    import torch

    from tuner.tracking.resilient import Serve

MAX_TAG_VALUE = 5000  # MLflow accepts 8000 characters; keep reasons readable
MAX_PARAM_VALUE = 6000
MAX_PARAMS_PER_BATCH = 100  # MLflow's limit on params in one log_batch


def _write_ahead_log(tracking_uri: str) -> None:
    """Switch an SQLite MLflow store to write-ahead logging (a setting stored in the file).

    Every slot writes its trials' runs into the one file; in SQLite's default rollback
    mode each commit locks out readers and syncs twice, so slots queue behind each
    other. With WAL, readers never wait and a commit is one append.
    """
    if not tracking_uri.startswith(SQLITE):
        return
    import sqlite3

    with closing(sqlite3.connect(tracking_uri[len(SQLITE):], timeout=20)) as db:
        db.execute("PRAGMA journal_mode=WAL")


class Tracker:
    """Writes one study's experiment, its parent run and its trials' runs."""

    def __init__(self, tracking: DictConfig, study_name: str):
        quiet_mlflow()
        self.tracking = tracking
        self.study_name = study_name
        # Studies may share an experiment (a scheduled job's rounds): each study is its
        # parent run there, and its trial runs are told apart by their study tag.
        self.experiment_name = tracking.get("experiment") or study_name
        # The fluent API (used to log models) reads the global URI; set both.
        mlflow.set_tracking_uri(tracking.tracking_uri)
        mlflow.set_registry_uri(tracking.tracking_uri)
        ensure_local_store(tracking.tracking_uri)  # made whole or not at all
        # With a tracking server, writes that it cannot take wait in an outbox instead of
        # holding training up (tuner.tracking.resilient); reads go straight through.
        self.client = resilient_client(tracking, study_name)
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None

    # -- the study -------------------------------------------------------------------

    def open(self, study: optuna.Study, study_params: Mapping[str, Any]) -> None:
        """Find or create the experiment and the parent run; mark the parent RUNNING."""
        self.experiment_id = self._experiment()
        _write_ahead_log(self.tracking.tracking_uri)
        # Logged models belong to the *active* experiment, whatever run they attach to;
        # without this they would land in MLflow's default experiment (./mlruns).
        mlflow.set_experiment(experiment_id=self.experiment_id)
        run_id = study.user_attrs.get(attrs.PARENT_RUN_ATTR)
        if run_id and not self.run_exists(run_id):
            run_id = None  # the MLflow store was wiped or changed: start a new parent
        if run_id is None:
            run = self.client.create_run(
                self.experiment_id, run_name=self.study_name,
                tags={tags.ROLE: "study", tags.STUDY: self.study_name})
            run_id = run.info.run_id
            self.log_params(run_id, study_params)
            study.set_user_attr(attrs.PARENT_RUN_ATTR, run_id)
        else:
            self.client.update_run(run_id, status="RUNNING")
        self.parent_run_id = self.client.parent_run_id = run_id
        self.client.experiment_id = self.experiment_id
        if self.client.outbox is not None:
            # An earlier sweep's end of the parent run (and its report) waiting there is
            # superseded: this sweep ends the parent run and writes the report again.
            self.client.outbox.discard(PARENT)

    def join(self, study: optuna.Study) -> None:
        """Attach to the parent run of a study that a ``tuner sweep`` opened."""
        run_id = study.user_attrs.get(attrs.PARENT_RUN_ATTR)
        if run_id is None or not self.run_exists(run_id):
            raise ConfigError(Problem(
                self.tracking.tracking_uri, "tracking",
                f"study '{self.study_name}' has no parent run in this MLflow store",
                "give the worker the same tracking settings as the sweep it joins"))
        self.attach(self.client.get_run(run_id).info.experiment_id, run_id)

    def attach(self, experiment_id: str, parent_run_id: str) -> None:
        """Write trial runs under a parent run that another process opened. Works while
        the tracking server is down: what it writes waits in the outbox, and the model
        a replay logs joins its experiment then (tuner.tracking.replay)."""
        self.experiment_id, self.parent_run_id = experiment_id, parent_run_id
        self.client.experiment_id, self.client.parent_run_id = experiment_id, parent_run_id
        try:
            mlflow.set_experiment(experiment_id=experiment_id)  # logged models join it
        except Exception as error:
            if not is_unavailable(error):
                raise

    def _experiment(self) -> str:
        name = self.experiment_name
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            if experiment.lifecycle_stage == "deleted":
                self.client.restore_experiment(experiment.experiment_id)
            return experiment.experiment_id
        location = None
        if self.tracking.artifact_location:
            location = (Path(self.tracking.artifact_location) / name).as_uri()
        return self.client.create_experiment(name, artifact_location=location,
                                             tags={tags.STUDY: self.study_name})

    def run_exists(self, run_id: str) -> bool:
        try:
            return self.client.get_run(run_id).info.lifecycle_stage == "active"
        except MlflowException:
            return False

    def close(self, status: str = "FINISHED") -> None:
        if self.parent_run_id is not None:
            self.client.set_terminated(self.parent_run_id, status=status)

    # -- trials ----------------------------------------------------------------------

    def create_trial_run(self, number: int, retry_of: int | None = None) -> str:
        """The trial's child run, tagged (all a trial waits for before it trains)."""
        run_tags = {tags.PARENT_RUN: self.parent_run_id, tags.ROLE: "trial",
                    tags.STUDY: self.study_name, tags.TRIAL_NUMBER: str(number)}
        if retry_of is not None:
            run_tags[tags.RETRY_OF] = str(retry_of)
        run = self.client.create_run(self.experiment_id, run_name=f"trial-{number}",
                                     tags=run_tags)
        return run.info.run_id

    def log_trial_inputs(self, run_id: str, params: Mapping[str, Any], config_yaml: str
                         ) -> None:
        """The trial's sampled params and its composed config (``config.yaml``)."""
        self.log_params(run_id, params)
        self.client.log_text(run_id, mask(config_yaml), "config.yaml")

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Params in as few requests as MLflow allows (the module's own, at its end)."""
        batch = [Param(k, mask(str(v))[:MAX_PARAM_VALUE]) for k, v in params.items()]
        for start in range(0, len(batch), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=batch[start:start + MAX_PARAMS_PER_BATCH])

    def why_not_resume(self, run_id: str, attempts: Sequence[int]) -> str | None:
        """Why the run that trials ``attempts`` trained in cannot be taken over by a
        repeat now, or None: it was never created (the server was down), records of it
        still wait in the outbox (they would land after the repeat's), the server does
        not answer, or the run is gone."""
        if is_pending(run_id):
            return "its MLflow run was never created: the tracking server did not answer"
        outbox, breaker = self.client.outbox, self.client.breaker
        if outbox is not None and (any(outbox.has(str(n)) for n in attempts)
                                   or outbox.has(f"run-{run_id}")):
            return "records of its MLflow run still wait in the outbox"
        if breaker is not None and not breaker.allows_try():
            return breaker.absent()
        if not self.run_exists(run_id):
            return f"its MLflow run {run_id} no longer exists"
        return None

    def resume_trial(self, run_id: str, number: int, retry_of: int) -> None:
        """Take over the run of an attempt cut short (KILLED) for its repeat ``number``:
        RUNNING again, named and tagged after the repeat, without the killed attempt's
        end tags. Written straight to the store (``why_not_resume`` said it answers)."""
        self.client.bind(run_id, number)  # what waits from now on is the repeat's
        # Tagged with the repeat's number before it runs again: a run RUNNING under an
        # ended trial's number is an orphan to whoever starts next (tuner.launch.conclude).
        self.client.log_batch(run_id, tags=[RunTag(tags.TRIAL_NUMBER, str(number)),
                                            RunTag(tags.RETRY_OF, str(retry_of))])
        self.client.update_run(run_id, status="RUNNING", name=f"trial-{number}")
        logged = self.client.get_run(run_id).data.tags
        for stale in (tags.STATE, tags.FAIL_REASON):
            if stale in logged:
                self.client.delete_tag(run_id, stale)

    def log_metrics(self, run_id: str, rows: Sequence[MetricRow]) -> None:
        """Write a trial's metric batch (tuner.trial.metrics_logger)."""
        log_metric_rows(self.client, run_id, rows)

    def logged_steps(self, run_id: str) -> dict[str, int]:
        """The last step that the run holds of each of its metrics (a resumed trial's
        logger writes no step twice)."""
        return logged_steps(self.client, run_id)

    def bind(self, run_id: str, number: int) -> None:
        """Which trial a run belongs to: its records that must wait join that trial's
        outbox file (tuner.tracking.resilient)."""
        self.client.bind(run_id, number)

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self.client.set_tag(run_id, key, value)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, mask(text), artifact_file)

    def log_artifact(self, run_id: str, local_path: str) -> None:
        self.client.log_artifact(run_id, local_path)

    def log_model(self, run_id: str, module: torch.nn.Module,
                  example_input: tuple[torch.Tensor, ...], config_yaml: str,
                  serve: Serve | None = None) -> str | None:
        """Log a trained module as the run's model (tuner.tracking.registry), as
        ``serve`` makes it; its URI, or None when it waits in the outbox
        (tuner.tracking.resilient)."""
        return self.client.log_model(run_id, module, example_input, config_yaml, serve)

    def end_trial(self, run_id: str, state: optuna.trial.TrialState, *,
                  reason: str | None = None, pruned_at: int | None = None,
                  interrupted: bool = False, only_if_running: bool = False,
                  number: int | None = None) -> None:
        """End the trial's run to match its Optuna state; with ``only_if_running``, only
        if the run has not ended already (decided on replay when the server is down).

        A pruned trial's run is FINISHED (it ended by the study's rule, not by a fault),
        which MLflow's runs table shows as it shows a complete one: its name (trial
        ``number``) says "pruned", so the table tells them apart at a glance."""
        run_tags = [RunTag(tags.STATE, state.name)]
        pruned = state == optuna.trial.TrialState.PRUNED
        if pruned:
            run_tags.append(RunTag(tags.PRUNED, "true"))
            if number is not None:
                run_tags.append(RunTag(tags.RUN_NAME, f"trial-{number} (pruned)"))
            if pruned_at is not None:
                run_tags.append(RunTag(tags.PRUNED_AT_EPOCH, str(pruned_at)))
        if reason:
            run_tags.append(RunTag(tags.PRUNED_BECAUSE if pruned else tags.FAIL_REASON,
                                   mask(reason)[:MAX_TAG_VALUE]))
        if interrupted:
            status = RunStatus.to_string(RunStatus.KILLED)
        elif state == optuna.trial.TrialState.FAIL:
            status = RunStatus.to_string(RunStatus.FAILED)
        else:
            status = RunStatus.to_string(RunStatus.FINISHED)
        self.client.end_run(run_id, run_tags, status, only_if_running=only_if_running)

    def log_error(self, run_id: str, text: str) -> None:
        self.client.log_text(run_id, mask(text), "error.txt")

    def end_abandoned(self, trial: optuna.trial.FrozenTrial, reason: str) -> None:
        """End the run of a trial whose process died (reaped): KILLED, with the reason.
        The run is the one the trial names, or, if a crash came between the run's
        creation and its link to the trial, the RUNNING run tagged with its number.
        Does nothing when the trial never got a run or its run already ended."""
        linked = trial.user_attrs.get(attrs.RUN_ID_ATTR)
        found = [] if linked is not None else running_trial_runs(
            self.client, self.experiment_id, self.study_name).get(trial.number, [])
        for run_id in filter(None, (linked, *found)):
            self.client.bind(run_id, trial.number)
            self.end_trial(run_id, optuna.trial.TrialState.FAIL, reason=reason,
                           interrupted=True, only_if_running=True)

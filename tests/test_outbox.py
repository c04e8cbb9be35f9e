"""The MLflow outbox: durable records in order, replayed once each, even when cut short.

Replay writes to a real SQLite MLflow store. The server going away mid-replay is a real
client that raises MLflow's own "API request ... failed" error right after a request
did its work: the worst moment, since the record is written but not yet marked done.
"""

from __future__ import annotations

import json
import os

import optuna
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from tests.servers import free_port
from tuner.core import attrs
from tuner.tracking import tags
from tuner.tracking.breaker import HTTP_DEFAULTS, Breaker, bound_http_retries, is_unavailable
from tuner.tracking.links import late_attr
from tuner.tracking.outbox import Outbox
from tuner.tracking.replay import replay
from tuner.tracking.resilient import ResilientClient, is_pending

EPOCHS = 3


class ServerDiesAfter(MlflowClient):
    """A real client whose server "goes away" just after its ``op`` request succeeded."""

    def __init__(self, uri: str, op: str):
        super().__init__(uri, registry_uri=uri)
        self.op = op

    def _die(self):
        raise MlflowException("API request to http://127.0.0.1:1/api/2.0/mlflow failed with "
                              "exception ConnectionError: connection refused")

    def create_run(self, *args, **kwargs):
        run = super().create_run(*args, **kwargs)
        if self.op == "create_run":
            self._die()
        return run

    def log_batch(self, run_id, metrics=(), params=(), tags=(), **kwargs):
        super().log_batch(run_id, metrics=metrics, params=params, tags=tags, **kwargs)
        if self.op == "metrics" and metrics:
            self._die()

    def set_terminated(self, *args, **kwargs):
        super().set_terminated(*args, **kwargs)
        if self.op == "end_run":
            self._die()


def _dead_breaker() -> Breaker:
    return Breaker(f"http://127.0.0.1:{free_port()}")  # nothing listens there


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory):
    """One SQLite MLflow store for the module (each test its own experiment): a new store
    costs seconds of schema migrations."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


def _setup(tmp_path, uri):
    store = MlflowClient(uri, registry_uri=uri)
    experiment = store.create_experiment(tmp_path.name)
    parent = store.create_run(experiment, tags={tags.ROLE: "study"}).info.run_id
    client = ResilientClient(store, Outbox(tmp_path / "outbox", "s"), _dead_breaker())
    client.experiment_id, client.parent_run_id = experiment, parent
    study = optuna.create_study(direction="maximize")
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=0.9, params={"lr": 0.1},
                                 distributions={"lr": FloatDistribution(0.0, 1.0)}))
    return uri, store, client, study, experiment, parent


def _trial_records(client: ResilientClient, experiment: str, parent: str) -> str:
    """What one trial writes while the server is down (the breaker is open)."""
    run_tags = {tags.PARENT_RUN: parent, tags.ROLE: "trial", tags.TRIAL_NUMBER: "0"}
    run_id = client.create_run(experiment, tags=run_tags, run_name="trial-0").info.run_id
    client.log_batch(run_id, params=[Param("lr", "0.1")])
    client.log_text(run_id, "model:\n  lr: 0.1\n", "config.yaml")
    for epoch in range(EPOCHS):
        client.log_batch(run_id, metrics=[Metric("val_acc", 0.5 + epoch / 10, 1000 + epoch,
                                                 epoch)])
    client.end_run(run_id, [RunTag(tags.STATE, "COMPLETE")], "FINISHED")
    return run_id


@pytest.mark.parametrize("dies_after", ["create_run", "metrics", "end_run"])
def test_replay_cut_short_after_a_write_writes_each_record_once(tmp_path, store_uri,
                                                              dies_after):
    uri, store, client, study, experiment, parent = _setup(tmp_path, store_uri)
    client.breaker.trip(ConnectionRefusedError("down"))
    run_id = _trial_records(client, experiment, parent)
    assert is_pending(run_id)
    assert [r["op"] for r in client.outbox.waiting("0")] == [
        "create_run", "log_batch", "log_text", *["log_batch"] * EPOCHS, "end_run"]

    client.breaker = Breaker(uri)  # the server is back...
    client.raw = ServerDiesAfter(uri, dies_after)  # ...and goes away again mid-replay
    [first] = replay(client, study)
    assert first.left > 0 and "does not answer" in first.why_left
    assert client.outbox.has("0")

    client.breaker, client.raw = Breaker(uri), store
    [second] = replay(client, study)
    assert second.left == 0 and not client.outbox.has("0")
    runs = store.search_runs([experiment], filter_string=f"tags.`{tags.ROLE}` = 'trial'")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.tags[tags.STATE] == "COMPLETE"
    assert run.data.params == {"lr": "0.1"}
    history = store.get_metric_history(run.info.run_id, "val_acc")
    assert [m.step for m in history] == list(range(EPOCHS))
    assert study.user_attrs[late_attr(attrs.RUN_ID_ATTR, 0)] == run.info.run_id
    assert replay(client, study) == []  # nothing left: nothing written again
    assert len(store.get_metric_history(run.info.run_id, "val_acc")) == EPOCHS


def test_records_of_a_running_trial_wait_and_a_held_file_is_skipped(tmp_path, store_uri):
    uri, store, client, study, experiment, parent = _setup(tmp_path, store_uri)
    client.breaker.trip(ConnectionRefusedError("down"))
    _trial_records(client, experiment, parent)
    running = optuna.create_study()
    running.ask()  # trial 0 is still RUNNING there
    client.breaker = Breaker(uri)
    [result] = replay(client, running)
    assert result.left == len(client.outbox.waiting("0")) and "RUNNING" in result.why_left
    with client.outbox.replaying("0") as held:  # another process replays the file
        assert held is not None
        [result] = replay(client, study)
        assert "another process" in result.why_left
    assert not store.search_runs([experiment], filter_string=f"tags.`{tags.ROLE}` = 'trial'")


def test_a_torn_last_line_loses_only_itself_and_secrets_are_masked(tmp_path):
    outbox = Outbox(tmp_path, "s")
    outbox.append("3", {"op": "log_text", "text": "postgresql://me:hunter2@db/x"})
    with outbox.path("3").open("ab") as handle:
        handle.write(b'{"id": "torn", "op": "log_b')  # a writer killed mid-line
    outbox.append("3", {"op": "log_batch"})
    records = outbox.waiting("3")
    assert [r["op"] for r in records] == ["log_text", "log_batch"]
    assert records[0]["text"] == "postgresql://me:***@db/x"
    assert "hunter2" not in outbox.path("3").read_text()
    for line in outbox.path("3").read_text().splitlines()[2:]:
        json.loads(line)  # the line after the torn one is whole


def test_http_retries_are_bounded_unless_the_user_set_them(monkeypatch):
    for name in HTTP_DEFAULTS:  # as a user's shell would have them: unset...
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "300")  # ...but for this one
    bound_http_retries()
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "300"
    for name, value in HTTP_DEFAULTS.items():
        if name != "MLFLOW_HTTP_REQUEST_TIMEOUT":
            assert os.environ[name] == value


def test_an_unreachable_server_is_told_apart_from_a_refused_request(store_uri, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    dead = MlflowClient(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(MlflowException) as unreachable:
        dead.get_experiment("0")
    assert is_unavailable(unreachable.value)
    store = MlflowClient(store_uri)
    with pytest.raises(MlflowException) as refused:
        store.get_run("0" * 32)
    assert not is_unavailable(refused.value)

"""The champion in MLflow's registry when two commands of one study end together.

A sweep and its workers each finish by promoting the study's best trial; on one study
they promote the same run, often within milliseconds. The real SQLite registry is used,
one client per command, as the commands would.
"""

from __future__ import annotations

import threading

import pytest
from mlflow import MlflowClient

from tuner.tracking import tags
from tuner.tracking.registry import current_champion, promote


@pytest.fixture()
def store(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri, registry_uri=uri)
    run_id = client.create_run(client.create_experiment("study")).info.run_id
    return uri, run_id


def _versions(client: MlflowClient, name: str) -> list[str]:
    return sorted(str(mv.version) for mv in client.search_model_versions(f"name = '{name}'"))


def _promote(uri: str, name: str, run_id: str):
    client = MlflowClient(uri, registry_uri=uri)
    return promote(client, name, f"runs:/{run_id}/model", run_id, 0.9, "maximize", 3)


def test_a_command_that_finds_the_other_mid_registration_completes_it(store):
    """The other command made the model and the run's version, and has not moved the
    alias yet: this one aliases that version instead of failing or adding a second."""
    uri, run_id = store
    client = MlflowClient(uri, registry_uri=uri)
    client.create_registered_model("study")
    client.create_model_version("study", source=f"runs:/{run_id}/model", run_id=run_id,
                                tags={tags.VERSION_VALUE: "0.9", tags.TRIAL_NUMBER: "3"})
    champion = _promote(uri, "study", run_id)
    assert champion.version == "1" and champion.promoted
    assert current_champion(client, "study").run_id == run_id
    assert _versions(client, "study") == ["1"]


def _promote_at_once(uri: str, name: str, run_id: str, commands: int):
    """``commands`` clients promote the same run, released together; results and errors."""
    start = threading.Barrier(commands)
    results, errors = [], []

    def command():
        start.wait()
        try:
            results.append(_promote(uri, name, run_id))
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=command) for _ in range(commands)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def test_commands_promoting_the_same_run_at_once_all_succeed_and_register_it_once(store):
    uri, run_id = store
    client = MlflowClient(uri, registry_uri=uri)
    for attempt in range(8):  # the race is in timing: several tries, each on a new name
        name = f"study-{attempt}"
        results, errors = _promote_at_once(uri, name, run_id, commands=3)
        assert not errors, errors
        assert {r.version for r in results} == {_versions(client, name)[0]}
        assert len(_versions(client, name)) == 1
        assert current_champion(client, name).run_id == run_id


def test_a_study_name_with_a_quote_is_registered(store):
    uri, run_id = store
    champion = _promote(uri, "it's", run_id)
    assert champion.version == "1"
    assert current_champion(MlflowClient(uri, registry_uri=uri), "it's").run_id == run_id

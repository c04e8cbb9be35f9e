"""The real-server helpers work: PostgreSQL for Optuna, MLflow's server backed by PostgreSQL.

Everything runs for real (the cluster is installed on demand by scripts/install-postgres), so
these also tell CI early when a fresh machine cannot host the servers other tests need.
"""

from __future__ import annotations

import contextlib

import pytest

# The servers and pg_env are fixtures in tests/conftest.py, shared with test_postgres.py.


def test_urls_carry_no_password(postgres):
    assert postgres.password not in postgres.url()
    assert postgres.url() == f"postgresql+psycopg2://tuner@127.0.0.1:{postgres.port}/tuner"
    assert postgres.password in postgres.url(with_password=True)
    assert postgres.env()["PGPASSWORD"] == postgres.password


def test_tcp_needs_the_password(postgres, monkeypatch):
    import psycopg2

    for name in ("PGPASSWORD", "PGPASSFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PGPASSFILE", "/nonexistent")  # no ~/.pgpass either
    with pytest.raises(psycopg2.OperationalError, match="password"):
        psycopg2.connect(host=postgres.host, port=postgres.port, user=postgres.user,
                         dbname=postgres.database, connect_timeout=5).close()


def test_optuna_rdb_storage_with_password_from_env(postgres, pg_env):
    import optuna
    import sqlalchemy

    engine = sqlalchemy.create_engine(postgres.url())
    with engine.connect() as connection:
        assert connection.execute(sqlalchemy.text("SELECT current_user")).scalar() == "tuner"
    engine.dispose()

    storage = optuna.storages.RDBStorage(postgres.url())
    study = optuna.create_study(study_name="smoke", storage=storage, direction="minimize")
    study.optimize(lambda trial: (trial.suggest_float("x", -1.0, 1.0) - 0.5) ** 2,
                   n_trials=3)
    reloaded = optuna.load_study(study_name="smoke", storage=postgres.url())
    assert len(reloaded.trials) == 3
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in reloaded.trials)
    storage.remove_session()
    storage.engine.dispose()


def test_mlflow_server_on_postgres(mlflow_server, postgres, tmp_path):
    import psycopg2
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server.url, registry_uri=mlflow_server.url)
    experiment_id = client.create_experiment("smoke")
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "loss", 0.25, step=1)
    client.log_text(run.info.run_id, "hello from the smoke test\n", "notes/hello.txt")
    client.set_terminated(run.info.run_id)

    fetched = client.get_run(run.info.run_id)
    assert fetched.data.metrics == {"loss": 0.25}
    assert fetched.info.status == "FINISHED"
    assert [a.path for a in client.list_artifacts(run.info.run_id, "notes")] == [
        "notes/hello.txt"]
    local = client.download_artifacts(run.info.run_id, "notes/hello.txt", str(tmp_path))
    with open(local) as handle:
        assert handle.read() == "hello from the smoke test\n"
    # Proxied: the bytes sit under the server's artifacts destination, not in the client.
    assert list(mlflow_server.artifacts_dir.rglob("hello.txt"))

    # The server's store really is PostgreSQL: its tables and our run are in database mlflow.
    connection = psycopg2.connect(**{
        "host": postgres.host, "port": postgres.port, "user": postgres.user,
        "password": postgres.password, "dbname": mlflow_server.database})
    with contextlib.closing(connection), connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = {row[0] for row in cursor.fetchall()}
        assert {"experiments", "runs", "metrics", "alembic_version"} <= tables
        cursor.execute("SELECT status FROM runs WHERE run_uuid = %s", (run.info.run_id,))
        assert cursor.fetchone() == ("FINISHED",)

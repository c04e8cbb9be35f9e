"""Workers on a real SLURM cluster: `tuner sweep launcher=slurm`, the documented sbatch
file, jobs cancelled and requeued mid-trial, and a trial across the nodes of a job.

The cluster is Debian's slurm-wlm and munge, started on 127.0.0.1 by
scripts/slurm-cluster (two slurmd "nodes" on this one host); the study is in a real
PostgreSQL and the records in a real MLflow server (tests/servers.py). The CLI runs in
subprocesses, the jobs in SLURM's own (slurmstepd), as on a cluster.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from tests.conftest import FAST, MODELS, REPO, run_tuner, start, tuner_command
from tuner.core import attrs
from tuner.study.trial_attrs import trial_attr
from tuner.tracking import tags

SHARED = ("storage=postgres", "tracking=server", *FAST, "trainer.max_epochs=2")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from tests.servers import SlurmCluster

    with SlurmCluster(tmp_path_factory.mktemp("slurm-logs"), nodes=2, cpus=4) as running:
        yield running


def cluster_env(cluster, postgres, mlflow_server, database: str) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", **cluster.env, **postgres.env(database),
            "MLFLOW_TRACKING_URI": mlflow_server.url}


def load(postgres, database: str, name: str) -> optuna.Study:
    storage = optuna.storages.RDBStorage(postgres.url(database, with_password=True))
    return optuna.load_study(study_name=name, storage=storage)


def finished(study: optuna.Study) -> list:
    return [t for t in study.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def trial_run_numbers(mlflow_server, experiment: str) -> list[int]:
    client = MlflowClient(mlflow_server.url)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], max_results=1000)
    return sorted(int(r.data.tags[tags.TRIAL_NUMBER]) for r in runs
                  if r.data.tags.get(tags.ROLE) == "trial")


def job_logs(run_dir: Path, study: str) -> str:
    folder = run_dir / "slurm" / study
    return "\n".join(f"--- {p.name} ---\n{p.read_text(errors='replace')}"
                     for p in sorted(folder.glob("*_log.*")))


def test_a_two_job_sweep_reaches_n_trials_and_crowns_a_champion(cluster, postgres,
                                                                 mlflow_server, tmp_path):
    database = postgres.create_database("slurm_two")
    env = cluster_env(cluster, postgres, mlflow_server, database)
    began = time.monotonic()
    result = run_tuner("sweep", "launcher=slurm", "launcher.nodes=2", "n_trials=8",
                       "study_name=two", *SHARED, MODELS, cwd=tmp_path, env=env, timeout=600)
    seconds = time.monotonic() - began
    output = result.stdout + result.stderr
    assert result.returncode == 0, output + job_logs(tmp_path / "runs", "two")
    print(f"two-job sweep, submit to champion: {seconds:.1f} s")

    # The sweep said what it submitted and followed the jobs to their end.
    [submitted] = [line for line in result.stdout.splitlines() if "submitted 2 SLURM" in line]
    jobs = submitted.split("job(s) ")[1].split(" (")[0].split(", ")
    assert len(jobs) == 2 and all("_" in j for j in jobs)  # one array, a task per job
    for job in jobs:
        assert f"job {job}: running" in result.stdout
        assert f"job {job}: ended" in result.stdout
    assert "done: 8 complete" in result.stdout or "done: " in result.stdout
    assert "models:/two@champion" in result.stdout

    study = load(postgres, database, "two")
    trials = study.get_trials(deepcopy=False)
    assert len(finished(study)) == 8
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    # Both jobs trained until the budget was spent, each a worker of its own.
    logs = job_logs(tmp_path / "runs", "two")
    assert logs.count("worker done (budget)") == 2, logs
    assert trial_run_numbers(mlflow_server, "two") == sorted(t.number for t in trials)
    client = MlflowClient(mlflow_server.url, registry_uri=mlflow_server.url)
    version = client.get_model_version_by_alias("two", tags.CHAMPION_ALIAS)
    best = study.best_trial
    assert version.run_id == trial_attr(best, attrs.RUN_ID_ATTR)
    parent = client.get_run(study.user_attrs[attrs.PARENT_RUN_ATTR])
    assert parent.info.status == "FINISHED"


def test_the_documented_sbatch_file_joins_a_running_study(cluster, postgres, mlflow_server,
                                                          tmp_path):
    database = postgres.create_database("slurm_doc")
    env = cluster_env(cluster, postgres, mlflow_server, database)
    args = ("n_trials=10", "study_name=doc", *SHARED, "trainer.max_epochs=5", "pruner=none")
    sweep = subprocess.Popen([*tuner_command(), "sweep", *args], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # As its header says: sbatch, the sweep's overrides after the file's name; here one
    # node instead of four (sbatch's options win over the file's #SBATCH lines).
    submitted = subprocess.run(
        ["sbatch", "--nodes=1", f"--output={tmp_path}/doc-%j.out",
         str(REPO / "docs" / "slurm-worker.sbatch"), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.split()[-1]
    output = sweep.communicate(timeout=600)[0]
    assert sweep.returncode == 0, output
    log = wait_for_job(job, env, tmp_path / f"doc-{job}.out")

    study = load(postgres, database, "doc")
    assert len(finished(study)) == 10
    assert not [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    said = [line for line in log.splitlines() if line.startswith("worker done (budget)")]
    assert said, log
    trained_there = int(said[0].split("trained ")[1].split()[0])
    assert trained_there >= 1, log  # the job joined the study and trained in it
    assert trial_run_numbers(mlflow_server, "doc") == sorted(t.number for t in study.trials)


def wait_for_job(job: str, env: dict[str, str], log: Path, timeout: float = 120) -> str:
    """The job's output, once SLURM no longer lists it as pending or running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queued = subprocess.run(["squeue", "--noheader", f"--jobs={job}"], env=env,
                                capture_output=True, text=True).stdout.strip()
        if not queued:
            break
        time.sleep(0.5)
    return log.read_text(errors="replace") if log.is_file() else "(no output)"


def test_cancelled_and_requeued_jobs_lose_nothing(cluster, postgres, mlflow_server, tmp_path):
    """Mid-trial, one job is cancelled (scancel) and the other gets the SIGTERM that SLURM
    sends before a time limit (scancel --signal=TERM, which leaves it RUNNING): both
    trials are checkpointed and marked interrupted, the second job requeues itself,
    starts again and resumes both from their checkpoints; the budget stays exact."""
    database = postgres.create_database("slurm_requeue")
    env = cluster_env(cluster, postgres, mlflow_server, database)
    process = start(["sweep", "launcher=slurm", "launcher.nodes=2", "launcher.requeue=true",
                     "n_trials=4", "study_name=requeue", *SHARED, "trainer.max_epochs=40",
                     "resume_checkpoint_s=0"], cwd=tmp_path, env=env)
    storage_url = postgres.url(database, with_password=True)
    deadline = time.monotonic() + 180
    running = []
    while time.monotonic() < deadline and len(running) < 2:
        time.sleep(0.5)
        try:
            study = optuna.load_study(study_name="requeue", storage=storage_url)
        except KeyError:
            continue  # not created yet
        running = [t for t in study.get_trials(deepcopy=False)
                   if t.state == TrialState.RUNNING and len(t.intermediate_values) >= 3]
    if len(running) < 2:
        process.kill()
        pytest.fail("two trials never trained at once:\n" + process.communicate()[0])
    jobs = sorted(subprocess.run(["squeue", "--noheader", "--array", "--name=tuner-requeue",
                                  "--format=%i"], env=env, capture_output=True,
                                 text=True).stdout.split())
    assert len(jobs) == 2, jobs
    cancelled, warned = jobs
    subprocess.run(["scancel", cancelled], env=env, check=True)
    subprocess.run(["scancel", "--signal=TERM", warned], env=env, check=True)
    # SLURM holds a requeued job for about two minutes (its BeginTime); the test lets it
    # start at once, as an administrator may.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "BeginTime" not in subprocess.run(
            ["squeue", "--noheader", f"--jobs={warned}", "--format=%r"], env=env,
            capture_output=True, text=True).stdout:
        time.sleep(0.2)
    subprocess.run(["scontrol", "update", f"JobId={warned}", "StartTime=now"], env=env,
                   check=True)
    output = process.communicate(timeout=600)[0]
    logs = job_logs(tmp_path / "runs", "requeue")
    assert process.returncode == 0, output + logs

    study = load(postgres, database, "requeue")
    trials = study.get_trials(deepcopy=False)
    assert len(finished(study)) == 4
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    # The two training trials, and those their drivers had claimed ahead (not started).
    cut = {t.number for t in trials if t.state == TrialState.FAIL}
    assert cut >= {t.number for t in running}, output
    assert all(trial_attr(t, attrs.FAIL_REASON_ATTR).startswith("interrupted")
               for t in trials if t.number in cut)
    repeats = {trial_attr(t, attrs.RETRY_OF_ATTR): t for t in trials
               if trial_attr(t, attrs.RETRY_OF_ATTR) is not None}
    assert set(repeats) == cut, output  # each interrupted trial was trained again...
    for trial in running:
        repeat = repeats[trial.number]
        assert repeat.state in (TrialState.COMPLETE, TrialState.PRUNED)
        assert trial_attr(repeat, attrs.RESUMED_FROM_EPOCH_ATTR) >= 3  # ...from its checkpoint
    assert "View run" not in output  # MLflow's own chatter stays out of tuner's lines
    assert f"requeueing job {warned}" in logs
    assert f"job {cancelled}: ended" in output
    again = (tmp_path / "runs" / "slurm" / "requeue" / f"{warned}_0_log.out").read_text()
    assert again.count("worker for study requeue") == 2, again  # it ran again
    # Every trial has its run, none left RUNNING; a repeat that resumed carries on the
    # run of the trial it resumes.
    client = MlflowClient(mlflow_server.url)
    experiment = client.get_experiment_by_name("requeue").experiment_id
    runs = {r.info.run_id: r for r in client.search_runs([experiment])
            if r.data.tags.get(tags.ROLE) == "trial"}
    assert {trial_attr(t, attrs.RUN_ID_ATTR) for t in trials} == set(runs)
    assert "RUNNING" not in {r.info.status for r in runs.values()}
    for trial in running:
        repeat = repeats[trial.number]
        assert trial_attr(repeat, attrs.RUN_ID_ATTR) == trial_attr(trial, attrs.RUN_ID_ATTR)
        assert runs[trial_attr(repeat, attrs.RUN_ID_ATTR)].info.status == "FINISHED"


def test_a_trial_across_the_two_nodes_of_a_job(cluster, postgres, mlflow_server, tmp_path):
    """launcher.nodes_per_trial=2: one job of two nodes, torchrun on each with the c10d
    rendezvous on the first; each trial trains on both ranks and is recorded once."""
    from tests.conftest import FIXTURE_CONF

    database = postgres.create_database("slurm_ddp")
    env = cluster_env(cluster, postgres, mlflow_server, database)
    result = run_tuner("sweep", "launcher=slurm", "launcher.nodes=2",
                       "launcher.nodes_per_trial=2", "n_trials=2", "study_name=ddp", *SHARED,
                       "search=width_only", "--config-dir", str(FIXTURE_CONF), cwd=tmp_path,
                       env=env, timeout=600)
    logs = job_logs(tmp_path / "runs", "ddp")
    assert result.returncode == 0, result.stdout + result.stderr + logs
    assert "submitted 1 SLURM job(s)" in result.stdout

    study = load(postgres, database, "ddp")
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    for trial in trials:
        assert sorted(trial.intermediate_values) == [1, 2]  # reported once per epoch
    assert trial_run_numbers(mlflow_server, "ddp") == [0, 1]
    client = MlflowClient(mlflow_server.url)
    for trial in trials:
        run = client.get_run(trial_attr(trial, attrs.RUN_ID_ATTR))
        assert run.data.tags[tags.WORLD_SIZE] == "2"
    # Both nodes ran their task: torchrun's agent on each.
    assert len(list((tmp_path / "runs" / "slurm" / "ddp").glob("*_1_log.out"))) == 1, logs


def test_a_ddp_trial_inside_a_job_trains_on_its_two_ranks(cluster, postgres, mlflow_server,
                                                         tmp_path):
    """devices_per_trial=2 in a job of one task: the slot starts the trial's ranks, not
    srun (Lightning took SLURM's one task for the ranks and refused the trial)."""
    database = postgres.create_database("slurm_ranks")
    env = cluster_env(cluster, postgres, mlflow_server, database)
    result = run_tuner("sweep", "launcher=slurm", "launcher.nodes=1", "n_trials=1",
                       "study_name=ranks", *SHARED, "devices_per_trial=2",
                       "trainer.accelerator=cpu", cwd=tmp_path, env=env, timeout=600)
    logs = job_logs(tmp_path / "runs", "ranks")
    assert result.returncode == 0, result.stdout + result.stderr + logs
    [trial] = load(postgres, database, "ranks").get_trials(deepcopy=False)
    assert trial.state == TrialState.COMPLETE, trial_attr(trial, attrs.FAIL_REASON_ATTR)
    run = MlflowClient(mlflow_server.url).get_run(trial_attr(trial, attrs.RUN_ID_ATTR))
    assert run.data.tags[tags.WORLD_SIZE] == "2"


@pytest.mark.parametrize(("overrides", "says"), [
    (["launcher.partition=gpu"], "'gpu' is not a partition of this cluster (sinfo lists debug)"),
    (["launcher.nodes=4", "launcher.nodes_per_trial=4"],
     "partition 'debug' has 2 node(s): a job of that many nodes would never start"),
])
def test_what_the_cluster_refuses_is_refused_before_anything_is_written(
        cluster, postgres, mlflow_server, tmp_path, overrides, says):
    database = postgres.create_database("slurm_refused")
    env = cluster_env(cluster, postgres, mlflow_server, database)
    result = run_tuner("sweep", "launcher=slurm", "study_name=refused", *SHARED, *overrides,
                       cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert says in result.stderr
    assert "nothing was written." in result.stderr
    assert not (tmp_path / "runs").exists()
    with pytest.raises(KeyError):
        load(postgres, database, "refused")


def test_no_sbatch_on_the_path_is_refused(tmp_path):
    # Only tuner's own folder (its python's): no SLURM command (/bin is /usr/bin on Debian).
    env = {"PATH": str(Path(tuner_command()[0]).parent)}
    result = run_tuner("sweep", "launcher=slurm", "storage=postgres", "tracking=server",
                       cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "sbatch is not on the PATH" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_detach_returns_at_once_and_the_same_command_follows_the_jobs(
        cluster, postgres, mlflow_server, tmp_path):
    database = postgres.create_database("slurm_detach")
    env = cluster_env(cluster, postgres, mlflow_server, database)
    # Trials long enough (three of 30 epochs, one job) for the job to be running still
    # when the second command looks.
    args = ("launcher=slurm", "launcher.nodes=1", "n_trials=3", "study_name=detach", *SHARED,
            "trainer.max_epochs=30", "pruner=none")
    detached = run_tuner("sweep", "--detach", *args, cwd=tmp_path, env=env)
    assert detached.returncode == 0, detached.stdout + detached.stderr
    assert "submitted 1 SLURM job(s)" in detached.stdout
    assert "detached: the jobs go on" in detached.stdout
    assert "squeue --name=tuner-detach" in detached.stdout
    assert "trial 0" not in detached.stdout  # it did not follow
    [job] = detached.stdout.split("job(s) ")[1].split(" (")[0].split(", ")

    followed = run_tuner("sweep", *args, cwd=tmp_path, env=env, timeout=600)
    output = followed.stdout + followed.stderr
    assert followed.returncode == 0, output + job_logs(tmp_path / "runs", "detach")
    # It found the job in the queue and followed it instead of submitting another.
    assert f"are in the queue already ({job}): following them" in followed.stdout, output
    assert "submitted" not in followed.stdout
    assert f"job {job}: ended" in followed.stdout
    assert len(finished(load(postgres, database, "detach"))) == 3
    client = MlflowClient(mlflow_server.url)
    parent = client.get_run(load(postgres, database, "detach").user_attrs[
        attrs.PARENT_RUN_ATTR])
    assert parent.info.status == "FINISHED"


def test_detach_is_for_slurm_only(tmp_path):
    result = run_tuner("sweep", "--detach", "n_trials=1", cwd=tmp_path)
    assert result.returncode == 2
    assert "--detach: applies to launcher=slurm only" in result.stderr
    assert not (tmp_path / "runs").exists()

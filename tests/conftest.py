"""Shared helpers: compose the real config, shrunk by overrides; run the real CLI.

Tests never mock Optuna, MLflow or Lightning: studies live in real journal files and
MLflow in real SQLite stores under pytest's tmp_path.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

FIXTURE_CONF = Path(__file__).parent / "fixtures" / "conf"  # test-only config groups
REPO = Path(__file__).resolve().parents[1]

# Small enough for a few seconds per sweep on 2 cores, large enough to train and prune.
# One slot: a sweep of a few tiny trials ends sooner than two slots start (each imports
# torch and Lightning), and the trials run in a fixed order. The tests of several slots
# (test_slots, the soak and PostgreSQL tests) and the fixtures that run the default sweep
# (two_studies) ask for them; slots=auto's rule has its own tests (test_slots).
# No model export: in a one-slot sweep of a few trials the export at the end (MLflow's
# imports in the slot, torch.export, the model) is about 40% of the command. The tests of
# models and champions add MODELS; the soak, CLI and page tests keep the default (on).
FAST = ("trainer.max_epochs=2", "tracking.report=false", "slots=1",
        "tracking.log_models=false")
MODELS = "tracking.log_models=true"


@pytest.fixture(autouse=True)
def _mlflow_uris_stay_in_their_test():
    """mlflow.set_tracking_uri and set_registry_uri also write MLFLOW_TRACKING_URI and
    MLFLOW_REGISTRY_URI into os.environ. A test that opens a Tracker in this process
    would otherwise point every later test's subprocesses (a "fresh" process loading
    a champion, say) at its own, by then deleted, store."""
    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    before = {name: os.environ.get(name) for name in names}
    yield
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def tuner_command() -> list[str]:
    """The installed console script, so that tests exercise the real entry point."""
    script = Path(sys.executable).with_name("tuner")
    if script.is_file():
        return [str(script)]
    found = shutil.which("tuner")
    return [found] if found else [sys.executable, "-m", "tuner"]


def fixtures_env() -> dict[str, str]:
    """PYTHONPATH for a tuner process that imports test fixtures (tests.fixtures.*)
    named by a config's _target_: the repository first, then whatever was there."""
    path = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(REPO), path) if p)}


def run_tuner(*args: str, cwd: Path, timeout: float = 300,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([*tuner_command(), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def tuner_here(*args: str, cwd: Path, env: dict[str, str] | None = None
               ) -> subprocess.CompletedProcess:
    """``tuner ARGS`` run in this process: the command's own code, output and exit code
    (``tuner.cli.main``), without a Python start-up and its imports, and with the slots
    forked from the fork server this test process already has. For tests whose subject
    is not the process boundary; :func:`run_tuner` starts the installed command.
    ``env`` and ``cwd`` apply for the call's length."""
    import contextlib
    import io

    from tuner.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd, saved_path = dict(os.environ), os.getcwd(), list(sys.path)
    saved_signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        os.environ.update(env or {})
        if env and env.get("PYTHONPATH"):
            sys.path[:0] = env["PYTHONPATH"].split(os.pathsep)
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as error:  # argparse's refusals
                code = error.code if isinstance(error.code, int) else 1
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        sys.path[:] = saved_path
        for signum, handler in saved_signals.items():
            signal.signal(signum, handler)
    return subprocess.CompletedProcess(["tuner", *args], code, out.getvalue(), err.getvalue())


def wait_until_gone(group: int, timeout: float = 60) -> None:
    """Wait for every process of a killed process group to be reaped by the kernel."""
    import signal
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.killpg(group, signal.SIGKILL)
    raise AssertionError(f"processes of the killed sweep still alive after {timeout} s")


def wait_for_http(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {process.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout}s")


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def start(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.Popen:
    """The CLI as a terminal starts it. Ctrl-C is on (SIGINT at its default) even when
    pytest itself runs in the background, where the shell starts jobs ignoring SIGINT
    and Python then installs no KeyboardInterrupt handler."""
    return subprocess.Popen([*tuner_command(), *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={**os.environ, **(env or {})},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def compose(*overrides: str, run_dir: Path, config_dir: Path | None = None):
    from tuner.config.compose import compose_config

    return compose_config([f"run_dir={run_dir}", *overrides], config_dir)


def plan(*overrides: str, run_dir: Path, config_dir: Path | None = None):
    from tuner.config.plan import make_plan

    return make_plan(compose(*overrides, run_dir=run_dir, config_dir=config_dir))


def sweep(*overrides: str, run_dir: Path, config_dir: Path | None = None):
    """Run a sweep in-process through the public API; returns the SweepOutcome."""
    import io

    from tuner import PlainReporter, run_sweep

    return run_sweep(plan(*FAST, *overrides, run_dir=run_dir, config_dir=config_dir),
                     PlainReporter(io.StringIO()))


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    """A real PostgreSQL server on 127.0.0.1 (installed from Debian's packages if missing)."""
    from tests.servers import PostgresServer

    with PostgresServer(tmp_path_factory.mktemp("postgres")) as server:
        yield server


@pytest.fixture(scope="session")
def mlflow_server(postgres, tmp_path_factory):
    """A real `mlflow server` on 127.0.0.1 with its backend store in that PostgreSQL."""
    from tests.servers import MlflowServer

    with MlflowServer(postgres, tmp_path_factory.mktemp("mlflow")) as server:
        yield server


@pytest.fixture
def pg_env(postgres, monkeypatch):
    """libpq's PG* variables (the password among them) in this process's environment."""
    for name, value in postgres.env().items():
        monkeypatch.setenv(name, value)


class SmallDisk:
    """A real file system of a few MB (a tmpfs this test mounts, as root): ``fill()``
    takes every byte left, ``free()`` gives them back."""

    def __init__(self, path: Path):
        self.path = path
        self.filler = path / ".filler"

    def fill(self) -> None:
        with self.filler.open("ab", buffering=0) as out:
            try:
                while True:
                    out.write(b"\0" * (1 << 12))
            except OSError:  # ENOSPC: full, to the last block
                pass

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MB tmpfs mounted at tmp_path/disk for the test's length; skipped where this
    process may not mount one (not root, or no mount namespace to do it in)."""
    path = tmp_path / "disk"
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield SmallDisk(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def load_study(run_dir: Path, name: str = "digits-mlp"):
    """A study from the embedded journal under ``run_dir``, read back as a user would."""
    import optuna

    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(run_dir / "optuna.journal")))
    return optuna.load_study(study_name=name, storage=storage)


def client_for(run_dir: Path, uri: str | None = None):
    from mlflow import MlflowClient

    uri = uri or f"sqlite:///{run_dir}/mlflow.db"
    return MlflowClient(uri, registry_uri=uri)


def trial_runs(run_dir: Path, study: str, uri: str | None = None):
    """Every trial run of a study's experiment in the MLflow store."""
    from tuner.tracking import tags

    client = client_for(run_dir, uri)
    experiment = client.get_experiment_by_name(study)
    runs = client.search_runs([experiment.experiment_id], max_results=5000)
    return [r for r in runs if r.data.tags.get(tags.ROLE) == "trial"]


def orphan_trial(run_dir: Path, linked: bool = True):
    """A RUNNING trial with sampled params and an MLflow run, owned by a process that has
    exited: what a sweep killed mid-trial leaves (``linked=False``: killed between the
    run's creation and its link to the trial). Returns (trial, params, run id)."""
    import multiprocessing as mp
    import socket

    from tuner.core import attrs
    from tuner.study.trial_attrs import set_trial_attrs
    from tuner.tracking import tags

    dead = mp.get_context("spawn").Process(target=int)
    dead.start()
    dead.join()
    study = load_study(run_dir)
    orphan = study.ask()
    params = plan(f"run_dir={run_dir}", run_dir=run_dir).space.sample(orphan)
    set_trial_attrs(orphan, {attrs.OWNER_ATTR: f"{socket.gethostname()}:{dead.pid}"})
    client = client_for(run_dir)
    experiment = client.get_experiment_by_name(study.study_name).experiment_id
    run_id = client.create_run(experiment, tags={  # the tags a trial's run is made with
        tags.ROLE: "trial", tags.STUDY: study.study_name,
        tags.TRIAL_NUMBER: str(orphan.number)}).info.run_id
    if linked:
        orphan.set_user_attr(attrs.RUN_ID_ATTR, run_id)
    return orphan, params, run_id


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*")) if path.exists() else []


# Test files that pytest-xdist runs on one worker: each worker builds its own session
# fixtures, and these two share two_studies (two default sweeps, over a minute), which a
# second worker would build again. Every other file is a group of its own.
SHARED_GROUPS = {"test_browser.py": "pages", "test_pages.py": "pages"}


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto`` (pyproject's addopts): one worker per core, at most 4. Most tests spend
    their time in tuner processes that import torch on one core while the other waits on
    pipes, servers and browsers; more workers than 4 mostly add contention to the tests
    that race several processes."""
    return max(1, min(4, len(os.sched_getaffinity(0))))


# The files that take longest, longest first (docs/benchmarks.md, section 9: a serial
# run's durations). xdist hands a worker the next group in collection order whenever it
# is free, so starting with the longest keeps one long file from running alone at the end.
LONGEST_FIRST = ("test_sweep.py", "test_soak.py", "test_postgres.py", "test_slurm.py",
                 "test_slots.py",
                 "test_browser.py", "test_pages.py", "test_cli.py", "test_bad_input_corpus.py",
                 "test_rounds.py", "test_ddp.py", "test_resume.py", "test_kill_loop.py",
                 "test_sync.py", "test_model_export.py", "test_validation.py",
                 "test_schedule.py")


@pytest.hookimpl(tryfirst=True)  # before xdist's, which reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: in-file order
    # --dist loadgroup (pyproject's addopts): a file's tests stay on one worker, so its
    # module-scoped fixtures (a sweep to read back, a server) are built once.
    for item in items:
        name = item.path.name
        item.add_marker(pytest.mark.xdist_group(SHARED_GROUPS.get(name, name)))
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


PAGES_STUDIES = {"digits-mlp": 8, "digits-mlp-b": 6}  # study -> n_trials


@pytest.fixture(scope="session")
def two_studies(tmp_path_factory) -> Path:
    """Two small sweeps of the default model in one project (cwd returned; records in
    cwd/runs), each with its end-of-sweep report: what the page and browser tests read."""
    cwd = tmp_path_factory.mktemp("pages")
    for (study, n), seed in zip(PAGES_STUDIES.items(), (0, 3), strict=True):
        result = tuner_here("sweep", f"study_name={study}", f"n_trials={n}", f"seed={seed}",
                            "trainer.max_epochs=3", cwd=cwd)
        assert result.returncode == 0, result.stdout + result.stderr
    return cwd

"""Real servers for tests: a throwaway PostgreSQL cluster and an MLflow tracking server.

Plain helpers, not fixtures: conftest or test modules wrap them in fixtures of whatever scope
they need. Nothing here is mocked: ``PostgresServer`` runs the distribution's own ``postgres``
binary (installed on demand by ``scripts/install-postgres``), ``MlflowServer`` runs
``python -m mlflow server`` against a database of that cluster.

Credentials never appear in URLs: the URLs name host, port, user and database only, and the
password travels in the standard libpq variables (``PGPASSWORD`` and friends, see
``PostgresServer.env``), the way a deployment keeps secrets out of configs and logs.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[1]
INSTALL_POSTGRES = REPO / "scripts" / "install-postgres"
SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")
OS_USER = "postgres"  # runs the cluster when the tests run as root


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _has_server_binaries(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in SERVER_BINARIES)


def _find_bin_dir() -> Path | None:
    on_path = shutil.which("initdb")
    if on_path:
        # Resolve symlinks (/usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb) so the
        # directory found also holds pg_ctl and postgres.
        directory = Path(on_path).resolve().parent
        if _has_server_binaries(directory):
            return directory
    # Debian keeps the server binaries off PATH, one directory per major version: newest first.
    versions = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.parent.name.isdigit()]
    for directory in sorted(versions, key=lambda p: int(p.parent.name), reverse=True):
        if _has_server_binaries(directory):
            return directory
    return None


def postgres_bin_dir() -> Path:
    """The directory holding initdb, pg_ctl and postgres; installs them if they are missing."""
    found = _find_bin_dir()
    if found:
        return found
    result = subprocess.run([str(INSTALL_POSTGRES)], capture_output=True, text=True)
    found = _find_bin_dir()
    if found:
        return found
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or in "
        f"/usr/lib/postgresql/*/bin, and {INSTALL_POSTGRES} could not install them "
        f"(exit {result.returncode}):\n{result.stdout}{result.stderr}"
    )


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as error:
        return f"(no log: {error})"


def _ensure_os_user(name: str) -> None:
    """Create a system user (and its group) to own the cluster, unless it already exists."""
    if subprocess.run(["id", "-u", name], capture_output=True).returncode == 0:
        return
    created = subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home",
         "--shell", "/usr/sbin/nologin", name],
        capture_output=True, text=True,
    )
    # Another test process may have created it in the meantime: only its absence is an error.
    if subprocess.run(["id", "-u", name], capture_output=True).returncode != 0:
        raise RuntimeError(f"could not create OS user {name!r}: {created.stderr.strip()}")


class PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1, for the duration of a ``with`` block.

    The cluster gets a role ``tuner`` (random password, scram-sha-256 over TCP) owning a
    database ``tuner``; ``create_database`` adds more. Only TCP on 127.0.0.1 and a unix socket
    in a private directory are opened: nothing touches /var/run/postgresql or port 5432.

    ``directory`` receives the server log (``postgres.log``). The cluster itself lives in a
    short private directory under /tmp, removed on exit, for two reasons: unix socket paths are
    limited to about 107 bytes, and as root the cluster runs as the ``postgres`` OS user, which
    cannot enter pytest's ``tmp_path`` (/tmp/pytest-of-root is mode 0700).
    """

    host = "127.0.0.1"
    user = "tuner"
    database = "tuner"
    superuser = "postgres"  # the cluster's bootstrap role, reached only through the socket

    def __init__(self, directory: Path, *, startup_timeout: float = 60) -> None:
        self.directory = Path(directory)
        self.startup_timeout = startup_timeout
        self.port = free_port()
        # URL-safe, so even the with_password URLs need no escaping; quoted anyway.
        self.password = secrets.token_urlsafe(18)
        self.log_path = self.directory / "postgres.log"
        self.bin_dir: Path | None = None
        self.runtime: Path | None = None  # data directory and socket directory live here
        self._as_root = os.geteuid() == 0
        self._started = False

    # -- paths -----------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        assert self.runtime is not None, "server not started"
        return self.runtime / "data"

    @property
    def socket_dir(self) -> Path:
        assert self.runtime is not None, "server not started"
        return self.runtime

    # -- process plumbing ------------------------------------------------------------------

    def _command(self, *argv: str) -> list[str]:
        """``argv`` with the server binary's full path, run as the postgres user when root.

        PostgreSQL refuses to run as root (initdb and postgres exit with "cannot be run as
        root"), so as root every server command goes through ``runuser -u postgres --``:
        util-linux, always present on Debian, no PAM prompts or password, and, unlike
        ``su -c``, no shell in between to quote for.
        """
        assert self.bin_dir is not None
        command = [str(self.bin_dir / argv[0]), *argv[1:]]
        return ["runuser", "-u", OS_USER, "--", *command] if self._as_root else command

    def _admin_env(self) -> dict[str, str]:
        # The caller's PG* variables (e.g. PGPASSWORD, PGDATA set by a test) must not steer
        # initdb or pg_ctl; LC_ALL pins messages and the cluster's locale to plain C.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return env

    def _run(self, *argv: str, timeout: float = 120) -> None:
        result = subprocess.run(self._command(*argv), capture_output=True, text=True,
                                cwd=self.runtime, env=self._admin_env(), timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:2])} failed (exit {result.returncode}):\n"
                               f"{result.stdout}{result.stderr}")

    def _admin_connect(self, dbname: str = "postgres"):
        import psycopg2

        connection = psycopg2.connect(host=str(self.socket_dir), port=self.port,
                                      user=self.superuser, dbname=dbname)
        connection.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        return connection

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> PostgresServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.bin_dir = postgres_bin_dir()
        self.runtime = Path(tempfile.mkdtemp(prefix="tuner-pg-", dir="/tmp"))
        try:
            if self._as_root:
                _ensure_os_user(OS_USER)
                shutil.chown(self.runtime, OS_USER, OS_USER)
            self._init_cluster()
            self._start_server()
            self._create_role_and_database()
        except BaseException:
            self.stop()
            raise
        return self

    def _init_cluster(self) -> None:
        self._run("initdb", "--pgdata", str(self.data_dir), "--username", self.superuser,
                  "--encoding", "UTF8", "--locale", "C",
                  "--auth-local", "trust", "--auth-host", "scram-sha-256",
                  "--no-sync")  # no fsync of the fresh cluster: it dies with the test run
        # Replace the generated pg_hba.conf: trust on the private socket (only its owner, or
        # root, can enter the 0700 directory holding it), passwords over TCP from 127.0.0.1.
        (self.data_dir / "pg_hba.conf").write_text(
            "# TYPE  DATABASE  USER  ADDRESS        METHOD\n"
            "local   all       all                  trust\n"
            "host    all       all   127.0.0.1/32   scram-sha-256\n"
        )
        # Durability is pointless for a throwaway cluster; speed is not. max_connections is
        # generous because parallel tuner workers (and the MLflow server) each hold a pool.
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# tests/servers.py\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "max_connections = 200\n"
                "password_encryption = 'scram-sha-256'\n"
                "fsync = off\n"
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
                "log_min_messages = warning\n"
            )

    def _start_server(self) -> None:
        # Without -l, pg_ctl hands the server's stdout and stderr to its own stdout: a file we
        # open here, so the log lands in `directory` even though the server runs as postgres.
        with self.log_path.open("ab") as log:
            result = subprocess.run(
                self._command("pg_ctl", "start", "--pgdata", str(self.data_dir), "--wait",
                              "--timeout", str(int(self.startup_timeout))),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.runtime, env=self._admin_env(), timeout=self.startup_timeout + 30,
            )
        self._started = True  # even on failure a postmaster may be up: stop() checks
        if result.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start (pg_ctl exit {result.returncode}); "
                               f"log {self.log_path}:\n{_tail(self.log_path)}")

    def _create_role_and_database(self) -> None:
        from psycopg2 import sql

        with contextlib.closing(self._admin_connect()) as connection:
            connection.cursor().execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(self.user)),
                (self.password,),
            )
        self.create_database(self.database)

    def create_database(self, name: str) -> str:
        """Create database ``name`` owned by the ``tuner`` role (no-op if it exists)."""
        from psycopg2 import sql

        with contextlib.closing(self._admin_connect()) as connection:
            cursor = connection.cursor()
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone() is None:
                cursor.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(self.user)))
        return name

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are cut) and delete the cluster."""
        if self._started and self.runtime is not None and self.data_dir.is_dir():
            try:
                self._run("pg_ctl", "stop", "--pgdata", str(self.data_dir),
                          "--mode", "fast", "--wait", timeout=60)
            except (RuntimeError, subprocess.TimeoutExpired):
                self._kill_postmaster()
        self._started = False
        if self.runtime is not None:
            shutil.rmtree(self.runtime, ignore_errors=True)
            self.runtime = None

    # -- a database that goes away and comes back (tests/test_outage.py) -------------------

    def halt(self) -> None:
        """Stop the server, keeping its data: a database going away (fast shutdown cuts
        every session)."""
        self._run("pg_ctl", "stop", "--pgdata", str(self.data_dir), "--mode", "fast",
                  "--wait", timeout=60)

    def resume(self) -> None:
        """Start the halted server again, same port and data."""
        self._start_server()

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: routine maintenance, about a second down."""
        with self.log_path.open("ab") as log:
            subprocess.run(self._command("pg_ctl", "restart", "--pgdata", str(self.data_dir),
                                         "--mode", "fast", "--wait"),
                           stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                           cwd=self.runtime, env=self._admin_env(), timeout=90, check=True)

    def _kill_postmaster(self) -> None:
        # Last resort when pg_ctl could not stop it: the first line of postmaster.pid.
        with contextlib.suppress(OSError, ValueError):
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGQUIT)  # immediate shutdown; root may signal postgres's
            for _ in range(100):
                os.kill(pid, 0)  # raises ProcessLookupError (an OSError) once it is gone
                time.sleep(0.1)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- what clients need -----------------------------------------------------------------

    def url(self, database: str | None = None, driver: str = "postgresql+psycopg2",
            with_password: bool = False) -> str:
        """SQLAlchemy URL for ``database`` (default ``tuner``); password-less unless asked.

        A password-less URL needs ``PGPASSWORD`` in the environment (see ``env``): libpq reads
        it when the URL carries none.
        """
        credentials = quote(self.user, safe="")
        if with_password:
            credentials += ":" + quote(self.password, safe="")
        return f"{driver}://{credentials}@{self.host}:{self.port}/{database or self.database}"

    def env(self, database: str | None = None) -> dict[str, str]:
        """The libpq variables that let a subprocess connect as ``tuner`` without a URL."""
        return {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGDATABASE": database or self.database,
        }


class MlflowServer:
    """``python -m mlflow server`` on 127.0.0.1 with a PostgreSQL backend store.

    The backend is database ``database`` (created if missing) of ``postgres``; its URI carries
    no password, the server process gets ``PGPASSWORD`` and friends in its environment.
    Without ``postgres`` the backend is an SQLite file in ``directory`` (cheaper to start).
    Artifacts are proxied (``--serve-artifacts``) into ``directory/artifacts``, so a client
    needs nothing but ``url`` to log and read runs, metrics, artifacts and models.

    ``stop()`` then ``start()`` again brings the same server back: same port, same store.
    """

    host = "127.0.0.1"

    def __init__(self, postgres: PostgresServer | None, directory: Path, *,
                 database: str = "mlflow", workers: int = 1,
                 startup_timeout: float = 120) -> None:
        self.postgres = postgres
        self.directory = Path(directory)
        self.database = database
        self.workers = workers
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self.url = f"http://{self.host}:{self.port}"
        self.backend_store_uri = (postgres.url(database) if postgres is not None
                                  else f"sqlite:///{self.directory / 'mlflow.db'}")
        self.artifacts_dir = self.directory / "artifacts"
        self.log_path = self.directory / "mlflow-server.log"
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", self.backend_store_uri,
            "--serve-artifacts", "--artifacts-destination", str(self.artifacts_dir),
            "--host", self.host, "--port", str(self.port),
            "--workers", str(self.workers),
            # MLflow 3's host-header check already admits localhost and private addresses;
            # naming ours keeps clients at 127.0.0.1:<port> working should that default narrow.
            "--allowed-hosts", f"{self.host}:{self.port},{self.host},localhost:{self.port}",
        ]

    def start(self) -> MlflowServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.artifacts_dir.mkdir(exist_ok=True)
        backend_env = {}
        if self.postgres is not None:
            self.postgres.create_database(self.database)
            backend_env = self.postgres.env(self.database)
        # No background job runner (tuner uses no MLflow jobs): a start costs half as much.
        env = {**os.environ, **backend_env, "PYTHONUNBUFFERED": "1",
               "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        # A tracking URI inherited from the caller must not point the server somewhere else.
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            env.pop(name, None)
        with self.log_path.open("ab") as log:
            # Own session (process group): uvicorn/gunicorn fork workers, and stop() must
            # reach them all, not just the `mlflow` CLI process.
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.directory, env=env, start_new_session=True,
            )
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.process.returncode}; "
                                   f"log {self.log_path}:\n{_tail(self.log_path)}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.25)
        raise RuntimeError(f"mlflow server not healthy after {self.startup_timeout:.0f} s; "
                           f"log {self.log_path}:\n{_tail(self.log_path)}")

    def stop(self) -> None:
        """Terminate the server's whole process group and wait for it."""
        process, self.process = self.process, None
        if process is None:
            return
        for sig, grace in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)  # pgid == pid thanks to start_new_session
            try:
                process.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
        # The CLI process may exit before its workers; reap stragglers left in the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def __enter__(self) -> MlflowServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class SlurmCluster:
    """A real SLURM cluster on 127.0.0.1 for the duration of a ``with`` block:
    ``scripts/slurm-cluster`` installs Debian's slurm-wlm and munge when they are missing
    and starts munged, slurmctld and one slurmd per node (``nodes`` of them on this one
    host, each declaring ``cpus`` cores); ``stop`` ends those daemons by their pids.

    Clients find it through ``SLURM_CONF`` (``env``): sbatch, squeue and tuner alike. The
    jobs run as root, in the submitting process's environment (sbatch's default)."""

    script = REPO / "scripts" / "slurm-cluster"

    def __init__(self, directory: Path, *, nodes: int = 2, cpus: int = 4) -> None:
        # Short: munged's socket path lives below it (about 107 bytes at most).
        self.directory = Path(tempfile.mkdtemp(prefix="tuner-slurm-", dir="/tmp"))
        self.logs = Path(directory)
        self.nodes, self.cpus = nodes, cpus
        self.conf = self.directory / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def start(self) -> SlurmCluster:
        result = subprocess.run([str(self.script), "start", str(self.directory),
                                 str(self.nodes), str(self.cpus)],
                                capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            self.stop()
            raise RuntimeError(f"{self.script} failed (exit {result.returncode}):\n"
                               f"{result.stdout}{result.stderr}")
        return self

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in (self.directory / "pids").read_text().split()]
        except OSError:
            return []

    def stop(self) -> None:
        """Cancel what is left, then SIGTERM (and after 10 s SIGKILL) each daemon by pid;
        the daemons' logs are kept in ``logs``."""
        pids = self.pids()
        if pids and self.conf.is_file():
            env = {**os.environ, **self.env}
            subprocess.run(["scancel", "--full", "--user=root"], capture_output=True, env=env,
                           timeout=30)
            deadline = time.monotonic() + 40  # the jobs' processes end (KillWait is 30 s)
            while time.monotonic() < deadline and subprocess.run(
                    ["squeue", "--noheader"], capture_output=True, text=True, env=env,
                    timeout=30).stdout.strip():
                time.sleep(0.5)
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and any(_alive(p) for p in pids):
                time.sleep(0.1)
        self.logs.mkdir(parents=True, exist_ok=True)
        for log in self.directory.glob("*.log"):
            shutil.copy(log, self.logs / log.name)
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie no one reaps, as a daemon's is here, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False

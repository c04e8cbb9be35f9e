"""An MLflow client whose writes never hold training up for long when the server is down.

:class:`ResilientClient` wraps the ``MlflowClient`` a :class:`~tuner.tracking.runs.Tracker`
writes with. Reads go straight through. A write to a run goes to the server, unless

- the run's outbox file already holds records (the new one must not overtake them),
- the run is still pending (its creation itself is in the outbox), or
- the breaker is open (the server failed a moment ago; :mod:`tuner.tracking.breaker`),

in which case, or when the request fails because the server is unreachable, the write
becomes a record in the study's outbox (:mod:`tuner.tracking.outbox`) and the caller
goes on. Errors the server answers with (a bad value, say) still raise.

A trial whose run could not be created gets a *pending* run id, ``pending:<number>``:
it is stored as the trial's ``mlflow_run_id`` like a real one, and every later write
for it queues behind the creation. Replay (:mod:`tuner.tracking.replay`) creates the
run and records its real id in the study's user attribute ``mlflow_run_id.<number>``
(Optuna does not change a finished trial's attributes; :mod:`tuner.tracking.links`
reads both).

The embedded store (``sqlite:///``) has an outbox too: a write it cannot take (the disk
full, the file locked or damaged) waits there the same way, behind a shorter pause
(:class:`~tuner.tracking.breaker.LocalBreaker`). A store given as a plain path has none.
"""

from __future__ import annotations

import posixpath
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunData, RunInfo, RunTag
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig

from tuner.tracking import tags
from tuner.tracking.breaker import Breaker, LocalBreaker, bound_http_retries, is_unavailable
from tuner.tracking.local_store import SQLITE
from tuner.tracking.outbox import PARENT, Outbox, trial_of
from tuner.tracking.server import is_server_uri

if TYPE_CHECKING:
    import torch

    # The model as it is logged, from (config, trained module, example input).
    Serve = Callable[[str, torch.nn.Module, tuple[torch.Tensor, ...]],
                     tuple[torch.nn.Module, tuple[torch.Tensor, ...]]]

PENDING_PREFIX = "pending:"
_TRIAL_NUMBER = tags.TRIAL_NUMBER


def pending_run_id(number: int) -> str:
    return f"{PENDING_PREFIX}{number}"


def is_pending(run_id: str) -> bool:
    return run_id.startswith(PENDING_PREFIX)


def _now_ms() -> int:
    return int(time.time() * 1000)


def resilient_client(tracking: DictConfig, study_name: str) -> ResilientClient:
    uri = tracking.tracking_uri
    client = MlflowClient(uri, registry_uri=uri)
    outbox_dir = tracking.get("outbox_dir")
    if not outbox_dir or not (is_server_uri(uri) or uri.startswith(SQLITE)):
        return ResilientClient(client, None, None)
    if is_server_uri(uri):
        bound_http_retries()
        breaker = Breaker(uri)
    else:  # the local store: a full disk or a locked file waits as a server's absence does
        breaker = LocalBreaker(uri)
    return ResilientClient(client, Outbox(Path(outbox_dir), study_name), breaker)


class ResilientClient:
    def __init__(self, client: MlflowClient, outbox: Outbox | None, breaker: Breaker | None):
        self.raw = client
        self.outbox, self.breaker = outbox, breaker
        self.experiment_id: str | None = None  # set by the Tracker (open / attach)
        self.parent_run_id: str | None = None
        self._trials: dict[str, int] = {}  # run id -> trial number, for the file key
        self._artifact_uris: dict[str, str] = {}  # run id -> artifact URI, of runs made here
        self._direct = False
        self.refused: set[str] = set()  # outbox files with a record the server refused

    def __getattr__(self, name: str) -> Any:  # reads, and anything not written here
        if name == "raw":  # not set yet (e.g. while being copied): no endless recursion
            raise AttributeError(name)
        return getattr(self.raw, name)

    def bind(self, run_id: str, number: int) -> None:
        """Tell the client which trial a run belongs to (its records go to that trial's
        file). Runs this client created are known already."""
        self._trials[run_id] = number

    @contextmanager
    def direct(self) -> Iterator[None]:
        """Write straight to the server, errors raised: while this process replays a
        file (its own writes must not queue in the file it holds)."""
        previous, self._direct = self._direct, True
        try:
            yield
        finally:
            self._direct = previous

    def key(self, run_id: str) -> str:
        if is_pending(run_id):
            return run_id.removeprefix(PENDING_PREFIX)
        if run_id in self._trials:
            return str(self._trials[run_id])
        if run_id == self.parent_run_id:
            return PARENT
        return f"run-{run_id}"

    # -- the write path ----------------------------------------------------------------

    def _write(self, run_id: str, record: Callable[[], dict[str, Any]],
               call: Callable[[], Any], *, creates: bool = False) -> Any:
        """``call()`` now, or ``record()`` into the outbox (then None); see the module.
        ``creates``: the call creates the (so far pending) run."""
        if self.outbox is None or self._direct:
            return call()
        key = self.key(run_id)
        waits = is_pending(run_id) and not creates
        if not (waits or self.outbox.has(key) or not self.breaker.allows_try()):
            try:
                return call()
            except Exception as error:
                if not is_unavailable(error):
                    raise
                self.breaker.trip(error)
        self._queue(key, run_id, record())
        return None

    def _queue(self, key: str, run_id: str, record: dict[str, Any]) -> None:
        self.outbox.append(key, {**record, "run": run_id, "trial": trial_of(key),
                                 "parent": self.parent_run_id,
                                 "experiment": self.experiment_id})

    def queue(self, run_id: str, record: dict[str, Any]) -> None:
        """Put a record in the outbox whatever the server's state (e.g. ``finalize``)."""
        self._queue(self.key(run_id), run_id, record)

    # -- writes ------------------------------------------------------------------------

    def create_run(self, experiment_id: str, start_time: int | None = None,
                   tags: dict[str, Any] | None = None, run_name: str | None = None) -> Run:
        start_time = start_time or _now_ms()
        number = (tags or {}).get(_TRIAL_NUMBER)  # None for the parent run

        def call() -> Run:
            run = self.raw.create_run(experiment_id, start_time=start_time, tags=tags,
                                      run_name=run_name)
            self._artifact_uris[run.info.run_id] = run.info.artifact_uri
            if number is not None:
                self.bind(run.info.run_id, int(number))
            return run

        if number is None:  # the parent run: created at the start, once the server answered
            return call()
        token = pending_run_id(int(number))
        run = self._write(token, lambda: {
            "op": "create_run", "experiment_id": experiment_id, "start_time": start_time,
            "tags": dict(tags or {}), "run_name": run_name}, call, creates=True)
        if run is not None:
            return run
        info = RunInfo(run_id=token, experiment_id=experiment_id, user_id="",
                       status="RUNNING", start_time=start_time, end_time=None,
                       lifecycle_stage="active", run_name=run_name)
        return Run(info, RunData())

    def log_batch(self, run_id: str, metrics: Sequence[Metric] = (),
                  params: Sequence[Param] = (), tags: Sequence[RunTag] = (),
                  synchronous: bool | None = None) -> None:
        self._write(run_id, lambda: {
            "op": "log_batch",
            "metrics": [[m.key, m.value, m.timestamp, m.step] for m in metrics],
            "params": [[p.key, p.value] for p in params],
            "tags": [[t.key, t.value] for t in tags]},
            lambda: self.raw.log_batch(run_id, metrics=list(metrics), params=list(params),
                                       tags=list(tags)))

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self._write(run_id, lambda: {"op": "log_text", "text": text,
                                     "artifact_file": artifact_file},
                    lambda: self._log_text_now(run_id, text, artifact_file))

    def _log_text_now(self, run_id: str, text: str, artifact_file: str) -> None:
        """``MlflowClient.log_text`` first reads the whole run back (``get_run``) to learn
        where its artifacts go: one store call of the few a trial makes (a round trip to
        a tracking server). A run this client created told us already."""
        uri = self._artifact_uris.get(run_id)
        if uri is None:
            self.raw.log_text(run_id, text, artifact_file)
            return
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        repo = get_artifact_repository(uri, tracking_uri=self.raw.tracking_uri)
        folder, name = posixpath.split(posixpath.normpath(artifact_file))  # as MLflow does
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp, name)
            path.write_text(text, encoding="utf-8")
            repo.log_artifact(str(path), folder or None)

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None
                     ) -> None:
        self._write(run_id, lambda: {"op": "log_artifact",
                                     "file": self.outbox.keep_file(local_path),
                                     "artifact_path": artifact_path},
                    lambda: self.raw.log_artifact(run_id, local_path, artifact_path))

    def set_tag(self, run_id: str, key: str, value: Any, synchronous: bool | None = None
                ) -> None:
        self._write(run_id, lambda: {"op": "log_batch", "metrics": [], "params": [],
                                     "tags": [[key, str(value)]]},
                    lambda: self.raw.set_tag(run_id, key, value))

    def set_terminated(self, run_id: str, status: str | None = None,
                       end_time: int | None = None) -> None:
        end_time = end_time or _now_ms()
        self._write(run_id, lambda: {"op": "end_run", "tags": [], "status": status or "FINISHED",
                                     "end_time": end_time, "only_if_running": False},
                    lambda: self.raw.set_terminated(run_id, status, end_time))

    def end_run(self, run_id: str, run_tags: list[RunTag], status: str, *,
                only_if_running: bool = False) -> None:
        """Tag a run and end it with ``status``; with ``only_if_running``, only if it is
        still RUNNING (decided when the record is replayed, if it waits)."""
        end_time = _now_ms()
        self._write(run_id, lambda: {"op": "end_run", "tags": [[t.key, t.value] for t in run_tags],
                                     "status": status, "end_time": end_time,
                                     "only_if_running": only_if_running},
                    lambda: end_run(self.raw, run_id, run_tags, status, end_time,
                                    only_if_running))
        # A slot runs thousands of trials: keep only runs in progress (a later artifact
        # write, if any, looks the run up as MLflow does).
        self._artifact_uris.pop(run_id, None)

    def log_model(self, run_id: str, module: torch.nn.Module,
                  example_input: tuple[torch.Tensor, ...], config_yaml: str,
                  serve: Serve | None = None) -> str | None:
        """Log the trial's model (tuner.tracking.registry.log_trial_model) and return its
        URI; or keep its weights in the outbox (then None), to be logged on replay by
        rebuilding the module from the trial's config. ``serve``: the model as it is
        logged, from the trained module (tuner.trial.served); the outbox keeps the
        trained module's weights, which the replay rebuilds and serves the same way."""
        from tuner.tracking.registry import log_trial_model
        from tuner.tracking.weights_file import save_weights

        def keep() -> dict[str, Any]:
            path, relative = self.outbox.new_file("model.pt")
            save_weights(path, module, example_input)
            return {"op": "log_model", "weights": relative, "config": config_yaml}

        def log() -> str:
            logged, example = ((module, example_input) if serve is None
                               else serve(config_yaml, module, example_input))
            return log_trial_model(logged, example, run_id)

        return self._write(run_id, keep, log)


def end_run(client: MlflowClient, run_id: str, run_tags: Sequence[RunTag], status: str,
            end_time: int, only_if_running: bool) -> bool:
    """Tag and end a run; False when ``only_if_running`` and it had ended (or is gone)."""
    if only_if_running:
        try:
            info = client.get_run(run_id).info
        except MlflowException as error:
            if is_unavailable(error):
                raise
            return False  # no such run (the store was wiped or changed)
        if info.lifecycle_stage != "active" or info.status != "RUNNING":
            return False
    if run_tags:
        client.log_batch(run_id, tags=list(run_tags))
    client.set_terminated(run_id, status=status, end_time=end_time)
    return True

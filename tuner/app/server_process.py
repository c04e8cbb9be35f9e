"""MLflow's UI or model server as a child of the `tuner` command, said ready when it answers.

MLflow takes seconds (the UI) to minutes (the model server, which loads the model) before
it answers; printing the address at once sent people to a page that did not load. The
command says what it starts, waits until the server answers its readiness URL (any HTTP
answer: the UI behind basic-auth answers 401), then prints the address. A server that
exits before that (a port taken meanwhile, a model that does not load) ends the command
with its exit code. Ctrl-C reaches the server too (one process group) and SIGTERM is
passed on; the command waits for the server to stop, so nothing is left running.

The server's own lines pass through, but for its chatter at INFO level (each request
it answered, its start-up steps, a deprecation warning of a library it imports, the note
that its security middleware is on): a warning or an error still shows, with its
traceback.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence

POLL = 0.5  # seconds between readiness checks
STOP_WAIT = 15  # seconds a stopping server gets before it is killed
# MLflow's download bars would fill the terminal while the model server starts; its INFO
# lines (start-up steps) tell the user nothing the command does not say itself.
QUIET_ENV = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "MLFLOW_LOGGING_LEVEL": "WARNING",
             # A library the server imports warns of its own deprecations at every start.
             "PYTHONWARNINGS": "ignore::DeprecationWarning,"
                               "ignore:starlette.middleware.wsgi is deprecated"}
CHATTER = re.compile(
    r"^(\S+ \S+ )?INFO[: ]"  # uvicorn's and MLflow's INFO lines, each request among them
    r"|^Registry store URI not provided"  # `mlflow ui` uses the backend store: as meant
    r"|^\[MLflow\] Security middleware enabled with default settings"  # loopback: as meant
    # A compressed champion's int8 weights are torchao's: importing it, torch warns of an
    # enum torchao registers the old way (tuner.core.quiet.quiet_torchao, in tuner's own
    # processes), and torchao lists the GPU kernels a CPU build cannot load.
    r"|.*_pytree\.py:\d+\] <enum '\w+'> is an Enum subclass"
    r"|^Failed to load \S+torchao/_C")


def run_server(command: Sequence[str], ready_url: str, starting: str, ready: str) -> int:
    """Run ``command`` until it stops; its exit code (130 after Ctrl-C)."""
    print(starting, flush=True)
    child = subprocess.Popen(list(command), env={**os.environ, **QUIET_ENV},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             bufsize=1)
    relay = threading.Thread(target=_relay, args=(child.stdout,), daemon=True)
    relay.start()
    signal.signal(signal.SIGTERM, lambda signum, frame: child.terminate())
    try:
        if _answers(child, ready_url):
            print(ready, flush=True)
        code = child.wait()
    except KeyboardInterrupt:
        code = _stopped(child)
        print("\nstopped", file=sys.stderr)
        return 130
    if code != 0 and code != -signal.SIGTERM:
        print(f"error: the server exited with status {code} (its messages are above)",
              file=sys.stderr)
    return 0 if code == -signal.SIGTERM else code


def _relay(lines) -> None:
    """The server's lines to this command's stderr, but for its chatter (above)."""
    for line in lines:
        if not CHATTER.search(line):
            print(line, end="", file=sys.stderr, flush=True)


def _answers(child: subprocess.Popen, url: str) -> bool:
    while child.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # it answered (401 behind basic-auth)
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            time.sleep(POLL)
    return False


def _stopped(child: subprocess.Popen) -> int:
    """After Ctrl-C: the server had it too from the terminal; if it came another way
    (a signal to this process only), it is asked to stop, then made to."""
    for ask in (lambda: None, child.terminate, child.kill):
        ask()
        try:
            return child.wait(timeout=STOP_WAIT / 3)
        except subprocess.TimeoutExpired:
            continue
    return child.wait()

"""Two of MLflow's checks on a logged model, answered without their fixed cost.

``mlflow.pytorch.log_model`` pays, once per process, for two checks whose answers tuner
knows cheaply; they are part of the export that ends a sweep (benchmarks/startup.py):

- Whether the process runs in a notebook (Jupyter's or Databricks'), to tag the
  model's source: MLflow imports IPython to ask, in several places (0.2 s where IPython
  is installed). A process in which IPython has not been imported is not inside an
  IPython shell; while such a process logs a model, ``import IPython`` fails at once, as
  it would where IPython is not installed, and every check answers "no notebook".
- Whether the model's pinned requirements match the installed packages, to warn if
  not, on saving the model and again on loading it back to validate its input example:
  MLflow maps every installed distribution's modules first (0.3 s). tuner pins ``torch==``
  the running version and MLflow pins itself; a pin is checked here against that one
  package's installed version, and anything else goes to MLflow's check.

Neither changes an answer. The second wraps MLflow's own function; where a later MLflow
moves it, its check runs as it is (slower, never wrong).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

_WRAPPED = "__tuner_wrapped__"


@contextmanager
def answered_cheaply() -> Iterator[None]:
    """Around a ``log_model`` call: both checks answered without their fixed cost."""
    from tuner.core.upstream import mlflow_requirement_check

    # The check of one requirement, which the warnings on saving and on loading (MLflow
    # loads the model back to validate its input example) both call.
    found = mlflow_requirement_check()
    if found is not None:
        _wrap(*found, _pins_checked_first)
    if "IPython" in sys.modules:  # imported (a notebook, or a user's module): ask it
        yield
        return
    sys.modules["IPython"] = None  # type: ignore[assignment]  # import fails at once
    try:
        yield
    finally:
        if sys.modules.get("IPython", ...) is None:
            del sys.modules["IPython"]


def _wrap(module, name: str, wrapper) -> None:
    original = getattr(module, name, None)
    if original is None or getattr(original, _WRAPPED, False):
        return

    def wrapped(*args, **kwargs):
        return wrapper(original, *args, **kwargs)

    setattr(wrapped, _WRAPPED, True)
    setattr(module, name, wrapped)


def _pins_checked_first(original, requirement, *args, **kwargs):
    if isinstance(requirement, str) and pin_is_installed(requirement):
        return None  # MLflow's answer for a satisfied requirement
    return original(requirement, *args, **kwargs)


def pin_is_installed(requirement: str) -> bool:
    """True if ``requirement`` is one package pinned with ``==`` (no marker, no extras)
    and that version is installed; False when it cannot be told this cheaply."""
    try:
        req = Requirement(requirement)
    except InvalidRequirement:
        return False
    specs = list(req.specifier)
    if req.marker or req.extras or len(specs) != 1 or specs[0].operator != "==":
        return False
    try:
        return req.specifier.contains(Version(metadata.version(req.name)), prereleases=True)
    except (metadata.PackageNotFoundError, InvalidVersion):
        return False

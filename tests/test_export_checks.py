"""MLflow's notebook and requirement checks on a logged model, answered cheaply and the
same (tuner.tracking.export_checks)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib.metadata import version

import pytest

from tuner.tracking.export_checks import pin_is_installed


def test_a_pin_counts_as_installed_only_when_that_version_is():
    torch_version = version("torch")  # 2.13.0+cpu here: a local version
    assert pin_is_installed(f"torch=={torch_version.split('+')[0]}")
    assert pin_is_installed(f"mlflow=={version('mlflow')}")
    assert not pin_is_installed("torch==1.0.0")
    assert not pin_is_installed("torch>=1")  # a range: MLflow's own check decides
    assert not pin_is_installed("torch==2.0; python_version < '3'")
    assert not pin_is_installed("no-such-package-here==1.0")
    assert not pin_is_installed("not a requirement ===")


# One process logs two models: first pinned to the installed torch, then to one that is
# not installed. Each model's line on stdout: was IPython imported, is the block lifted
# again, the logged model's tags; each model's stderr follows a marker line.
LOG_TWO_MODELS = """
import json, sys, tempfile
import torch, mlflow, mlflow.pytorch
from mlflow import MlflowClient
from tuner.tracking.export_checks import answered_cheaply

folder = tempfile.mkdtemp()
uri = f"sqlite:///{folder}/mlflow.db"
mlflow.set_tracking_uri(uri)
client = MlflowClient(uri)
experiment = client.create_experiment("e", artifact_location=f"{folder}/artifacts")
mlflow.set_experiment(experiment_id=experiment)
run = client.create_run(experiment).info.run_id
for pin in sys.argv[1:]:
    print(f"--- {pin}", file=sys.stderr, flush=True)
    with answered_cheaply():
        info = mlflow.pytorch.log_model(
            torch.nn.Linear(2, 1).eval(), name="model",
            input_example=torch.zeros(2, 2).numpy(), serialization_format="pt2",
            run_id=run, pip_requirements=[pin])
    print(json.dumps(["IPython" in sys.modules, sys.modules.get("IPython", 0) is None,
                      client.get_logged_model(info.model_id).tags]), flush=True)
"""
INSTALLED = f"torch=={version('torch').split('+')[0]}"
MISSING = "torch==1.0.0"


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    """stdout lines and stderr parts of the two models, by pin."""
    result = subprocess.run([sys.executable, "-c", LOG_TWO_MODELS, INSTALLED, MISSING],
                            cwd=tmp_path_factory.mktemp("models"), capture_output=True,
                            text=True, check=True)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    _, installed_err, missing_err = re.split(r"^--- .*$", result.stderr, flags=re.M)
    return {INSTALLED: (lines[0], installed_err), MISSING: (lines[1], missing_err)}


def test_a_model_is_logged_with_the_same_tags_without_importing_ipython(two_models):
    (imported, blocked, tags), stderr = two_models[INSTALLED]
    assert not imported and not blocked  # not imported, and the block is lifted again
    assert tags["mlflow.source.type"] == "LOCAL"  # not NOTEBOOK: the answer is unchanged
    assert "mismatch" not in stderr.lower()


def test_a_pin_that_is_not_installed_still_gets_mlflows_warning(two_models):
    (imported, _, _), stderr = two_models[MISSING]
    assert not imported
    assert MISSING in stderr and "mismatch" in stderr.lower()

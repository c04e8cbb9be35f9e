"""MLflow's notebook and requirement checks on a logged model, answered cheaply and the
same (tuner.tracking.export_checks)."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version

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


LOG_A_MODEL = """
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
with answered_cheaply():
    info = mlflow.pytorch.log_model(
        torch.nn.Linear(2, 1).eval(), name="model", input_example=torch.zeros(2, 2).numpy(),
        serialization_format="pt2", run_id=run, pip_requirements=[sys.argv[1]])
print("IPython" in sys.modules, "IPython" in sys.modules and sys.modules["IPython"] is None)
print(json.dumps(client.get_logged_model(info.model_id).tags))
"""


def test_a_model_is_logged_with_the_same_tags_without_importing_ipython(tmp_path):
    pinned = f"torch=={version('torch').split('+')[0]}"
    result = subprocess.run([sys.executable, "-c", LOG_A_MODEL, pinned], cwd=tmp_path,
                            capture_output=True, text=True, check=True)
    out = result.stdout.splitlines()
    assert out[0] == "False False"  # not imported, and the block is lifted again
    tags = json.loads(out[1])
    assert tags["mlflow.source.type"] == "LOCAL"  # not NOTEBOOK: the answer is unchanged
    assert "mismatch" not in (result.stdout + result.stderr).lower()


def test_a_pin_that_is_not_installed_still_gets_mlflows_warning(tmp_path):
    out = subprocess.run([sys.executable, "-c", LOG_A_MODEL, "torch==1.0.0"], cwd=tmp_path,
                         capture_output=True, text=True, check=True)
    assert "torch==1.0.0" in out.stdout + out.stderr
    assert "mismatch" in (out.stdout + out.stderr).lower()

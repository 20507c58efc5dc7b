"""The notebooks run top to bottom in the Kedro kernel, after a short `kedro run`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from mlflow import MlflowClient
from nbclient import NotebookClient

from tests.conftest import PROJECT_ROOT
from tests.short_run import kedro, paired_short_run, short_run_project

pytestmark = pytest.mark.e2e

NOTEBOOKS = sorted(path.name for path in (PROJECT_ROOT / "notebooks").glob("*.ipynb"))
KERNEL = "kedro_omics_vae"
# Notebooks that read the paired family's outputs, made by a short paired run on demand.
NEEDS_PAIRED_RUN = {"03_paired_imputation.ipynb"}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return short_run_project(tmp_path_factory)


@pytest.fixture(scope="module")
def kedro_kernel(project, tmp_path_factory):
    """`kedro jupyter setup`'s kernel, installed into a temporary Jupyter data folder."""
    data_dir = tmp_path_factory.mktemp("jupyter_data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_DATA_DIR", str(data_dir))
        kedro(project, "jupyter", "setup")
        spec = json.loads((data_dir / "kernels" / KERNEL / "kernel.json").read_text())
        assert spec["argv"][-2:] == ["--ext", "kedro.ipython"]
        yield KERNEL


def test_notebooks_are_committed_without_outputs():
    assert {
        "01_quickstart.ipynb",
        "02_compare_runs.ipynb",
        "03_paired_imputation.ipynb",
    } <= set(NOTEBOOKS)
    for name in NOTEBOOKS:
        notebook = nbformat.read(PROJECT_ROOT / "notebooks" / name, as_version=4)
        nbformat.validate(notebook)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [], f"{name} has outputs; clear them before committing"
                assert cell.execution_count is None, f"{name} has execution counts"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom_in_the_kedro_kernel(project, kedro_kernel, name):
    if name in NEEDS_PAIRED_RUN:
        paired_short_run(project)
    notebook = nbformat.read(project / "notebooks" / name, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name=kedro_kernel,
        resources={"metadata": {"path": str(project / "notebooks")}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, on any error

    images = [
        output
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {})
    ]
    assert images, f"{name} drew no figure"
    if name == "02_compare_runs.ipynb":
        _check_champion_registered(project)


def _check_champion_registered(project: Path) -> None:
    uri = f"sqlite:///{project / 'mlflow.db'}"
    store = MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = store.get_model_version_by_alias("invae", "champion")
    assert version.tags["model_name"] == "invae"
    assert float(version.tags["scib/total"]) > 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("app", ["lab", "notebook"])
def test_kedro_jupyter_starts_a_server_with_the_kedro_kernel(project_copy, tmp_path, app):
    port = _free_port()
    env = {
        **os.environ,
        "KEDRO_DISABLE_TELEMETRY": "true",
        "JUPYTER_DATA_DIR": str(tmp_path / "jupyter_data"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter_runtime"),
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kedro",
            "jupyter",
            app,
            "--no-browser",
            f"--port={port}",
            "--ServerApp.ip=127.0.0.1",
            "--IdentityProvider.token=test",
            "--allow-root",  # CI runs as root
        ],
        cwd=project_copy,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # kedro starts jupyter as a child: stop the whole group
    )
    try:
        specs = _poll_json(f"http://127.0.0.1:{port}/api/kernelspecs?token=test", server)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        _, stderr = server.communicate(timeout=60)
    assert specs["default"] == KERNEL, stderr[-3000:]
    assert KERNEL in specs["kernelspecs"]


def _poll_json(url: str, server: subprocess.Popen, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the server exited {server.returncode}: {server.stderr.read()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.load(response)
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"nothing answered {url} within {timeout} s")

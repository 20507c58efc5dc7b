"""kedro-viz and the MLflow UI opened in a real browser (Debian's Chromium, via Playwright).

Screenshots go to the test's temporary folder; with OMICS_VAE_UPDATE_SCREENSHOTS=1 they
are also copied to docs/images/, where the README and the documentation show them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from omics_vae.pipelines.data_processing.pipeline import create_pipeline as data_processing
from omics_vae.pipelines.embedding.pipeline import create_pipeline as embedding
from omics_vae.pipelines.evaluation.pipeline import create_pipeline as evaluation
from omics_vae.pipelines.training.pipeline import create_pipeline as training
from omics_vae.runs import find_models
from tests.conftest import PROJECT_ROOT
from tests.short_run import kedro, short_run_project

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = PROJECT_ROOT / "docs" / "images"
VIEWPORT = {"width": 1600, "height": 1000}


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory) -> Iterator:
    """A headless Chromium with a new, empty profile."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is absent: install Debian's chromium (apt-get install chromium "
            "chromium-driver; .ci/run does) to run the browser tests"
        )
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium_profile")),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport=VIEWPORT,
        )
        context.set_default_timeout(90_000)
        yield context
        context.close()


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return short_run_project(tmp_path_factory)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def serve(tmp_path_factory) -> Iterator:
    """Start a server command (``{port}`` filled in) and wait until it answers."""
    tmp_path = tmp_path_factory.mktemp("servers")
    started = []

    def start(command: list[str], cwd: Path, timeout: float = 120) -> str:
        port = _free_port()
        log = (tmp_path / f"server_{port}.log").open("w")
        process = subprocess.Popen(
            [part.format(port=port) for part in command],
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the server's workers go with it
        )
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        _wait_until_answering(url, process, timeout, tmp_path / f"server_{port}.log")
        return url

    yield start
    for process in started:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def _wait_until_answering(url: str, process: subprocess.Popen, timeout: float, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"nothing answered {url} within {timeout} s:\n{log.read_text()[-3000:]}")


def _save_screenshot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("OMICS_VAE_UPDATE_SCREENSHOTS") == "1":
        shutil.copy(path, SCREENSHOTS / name)
    return path


# ---- kedro-viz --------------------------------------------------------------------------


def _single_cell_pipeline():
    return data_processing() + training() + embedding() + evaluation()


def _catalog_layers(project: Path) -> dict[str, str]:
    catalog = yaml.safe_load((project / "conf" / "base" / "catalog.yml").read_text())
    return {name: entry["metadata"]["kedro-viz"]["layer"] for name, entry in catalog.items()}


def test_kedro_viz_shows_the_pipelines_nodes_and_datasets_in_their_layers(
    project, browser_context, serve, tmp_path
):
    kedro(project, "viz", "build")
    url = serve(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "{port}"],
        cwd=project / "build",
    )
    page = browser_context.new_page()
    page.set_viewport_size({"width": 1400, "height": 1800})  # the whole graph, legible
    # The light theme reads better in the documentation.
    page.add_init_script("localStorage.setItem('KedroViz', JSON.stringify({theme: 'light'}))")
    page.goto(url, wait_until="domcontentloaded")
    page.locator("svg .pipeline-node").first.wait_for()
    page.locator(".pipeline-layer-name").first.wait_for()

    drawn = _drawn_nodes(page)
    pipeline = _single_cell_pipeline()
    expected_nodes = {node.name for node in pipeline.nodes}
    expected_datasets = {name for name in pipeline.datasets() if not name.startswith("params:")}
    assert expected_nodes <= {name for name, kind, _ in drawn if kind == "task"}
    assert expected_datasets <= {name for name, kind, _ in drawn if kind == "data"}

    bands = _layer_bands(page)
    layers = _catalog_layers(project)
    assert list(bands) == [
        "raw", "intermediate", "primary", "feature", "model_input", "models", "model_output",
        "reporting",
    ]  # fmt: skip
    for name, kind, y in drawn:
        if kind == "data" and name in layers:
            top, bottom = bands[layers[name]]
            assert top <= y <= bottom, f"{name} is drawn outside its layer {layers[name]}"

    for close in page.locator(".feature-hints__close").all():
        close.click()
    _save_screenshot(page, tmp_path, "kedro_viz.png")


def _drawn_nodes(page) -> list[tuple[str, str, float]]:
    """(name, task|data|parameters, y) of every node drawn in the flowchart."""
    return [
        (name, kind, float(re.search(r"translate\([^,]+,\s*([-\d.]+)\)", transform).group(1)))
        for name, kind, transform in page.locator("svg .pipeline-node").evaluate_all(
            "nodes => nodes.map(n => [n.dataset.nodeFullname, n.dataset.nodeType,"
            " n.getAttribute('transform')])"
        )
    ]


def _layer_bands(page) -> dict[str, tuple[float, float]]:
    """Layer name -> (top, bottom) of its band, in the flowchart's coordinates."""
    names = page.locator(".pipeline-layer-name").all_inner_texts()
    rects = page.locator("rect.pipeline-layer").evaluate_all(
        "rects => rects.map(r => [+r.getAttribute('y'), +r.getAttribute('height')])"
    )
    assert len(names) == len(rects)
    return {name: (y, y + height) for name, (y, height) in zip(names, rects, strict=True)}


# ---- MLflow UI --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_runs(project) -> list[str]:
    """The two trained runs of the short run (seeds 0 and 1), oldest first."""
    table = find_models("invae", sort_by=None, tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    assert len(table) >= 2
    return list(table.sort_values("start_time").run_id[:2])


@pytest.fixture(scope="module")
def mlflow_ui(project, serve) -> str:
    return serve(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{project / 'mlflow.db'}",
            "--default-artifact-root",
            str(project / "mlruns"),
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
            "--workers",
            "1",
        ],
        cwd=project,
    )


def test_mlflow_ui_lists_the_runs_and_their_metrics(mlflow_ui, browser_context, two_runs):
    page = browser_context.new_page()
    page.goto(f"{mlflow_ui}/#/experiments/1/runs", wait_until="domcontentloaded")
    page.get_by_text("__default__").first.wait_for()
    page.get_by_text("training", exact=True).first.wait_for()

    page.goto(f"{mlflow_ui}/#/experiments/1/runs/{two_runs[0]}", wait_until="domcontentloaded")
    page.get_by_text("scib/total").first.wait_for()
    text = page.inner_text("body")
    for metric in ("val/loss", "train/loss", "scib/total"):
        assert metric in text


def test_mlflow_compare_view_lines_up_two_runs(mlflow_ui, browser_context, two_runs, tmp_path):
    runs = quote(json.dumps(two_runs, separators=(",", ":")))
    experiments = quote(json.dumps(["1"]))
    page = browser_context.new_page()
    page.goto(
        f"{mlflow_ui}/#/compare-runs?runs={runs}&experiments={experiments}",
        wait_until="domcontentloaded",
    )
    page.get_by_text("Comparing 2 Runs").wait_for()
    page.get_by_text("Run details").wait_for()
    text = page.inner_text("body")
    for run_id in two_runs:
        assert run_id in text
    seed_row = re.search(r"training\.seed\s+(\S+)\s+(\S+)", text)
    assert seed_row is not None, "training.seed is not in the compare view"
    assert seed_row.groups() == ("0", "1")

    page.get_by_role("button", name="Close").click()  # MLflow's assistant panel
    page.get_by_label("Parameters - Show diff only").click()
    page.get_by_text("training.seed", exact=True).evaluate(
        "row => row.scrollIntoView({block: 'center'})"
    )
    _save_screenshot(page, tmp_path, "mlflow_compare.png")

    # The metrics table is a virtualised grid: scroll it to draw its last rows (after the
    # screenshot: its values are a second grid that does not follow).
    first_metric = page.get_by_text("kl_weight", exact=True).last
    first_metric.evaluate(
        "cell => { const grid = cell.closest('.ReactVirtualized__Grid');"
        " grid.scrollTop = grid.scrollHeight; }"
    )
    for metric in ("val/loss", "train/loss"):
        page.get_by_text(metric, exact=True).last.wait_for()

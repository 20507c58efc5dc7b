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
from mlflow import MlflowClient
from mlflow.entities import Run

from omics_vae.pipelines.data_processing.pipeline import create_pipeline as data_processing
from omics_vae.pipelines.embedding.pipeline import create_pipeline as embedding
from omics_vae.pipelines.evaluation.pipeline import create_pipeline as evaluation
from omics_vae.pipelines.training.pipeline import create_pipeline as training
from omics_vae.runs import find_models
from tests.conftest import PROJECT_ROOT
from tests.short_run import SWEEP, SWEEP_GRID, short_run_project, viz_build

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
(LATENT_KEY,) = SWEEP_GRID  # the key the short run's two sweep variants differ in
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
    url = serve(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "{port}"],
        cwd=viz_build(project),
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
def plain_run(project) -> str:
    """The short run's first trained run (its `kedro run`, with scib scores)."""
    table = find_models("invae", sort_by=None, tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    assert len(table) >= 1
    return table.sort_values("start_time").run_id.iloc[0]


@pytest.fixture(scope="module")
def sweep_variants(project) -> list[Run]:
    """The short run's two sweep variants (child runs of one parent), smaller latent first."""
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("omics_vae")
    children = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.sweep = '{SWEEP}'"
    )
    assert len(children) == 2
    assert len({child.data.tags["mlflow.parentRunId"] for child in children}) == 1
    assert all(child.info.status == "FINISHED" for child in children)
    return sorted(children, key=lambda child: int(child.data.params[LATENT_KEY]))


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


def test_mlflow_ui_lists_the_runs_and_their_metrics(mlflow_ui, browser_context, plain_run):
    page = browser_context.new_page()
    page.goto(f"{mlflow_ui}/#/experiments/1/runs", wait_until="domcontentloaded")
    page.get_by_text("__default__").first.wait_for()
    page.get_by_text("training", exact=True).first.wait_for()

    page.goto(f"{mlflow_ui}/#/experiments/1/runs/{plain_run}", wait_until="domcontentloaded")
    page.get_by_text("scib/total").first.wait_for()
    text = page.inner_text("body")
    for metric in ("val/loss", "train/loss", "scib/total"):
        assert metric in text


def test_mlflow_compare_view_lines_up_two_sweep_variants(
    mlflow_ui, browser_context, sweep_variants, tmp_path
):
    run_ids = [child.info.run_id for child in sweep_variants]
    runs = quote(json.dumps(run_ids, separators=(",", ":")))
    experiments = quote(json.dumps([sweep_variants[0].info.experiment_id]))
    page = browser_context.new_page()
    page.goto(
        f"{mlflow_ui}/#/compare-runs?runs={runs}&experiments={experiments}",
        wait_until="domcontentloaded",
    )
    page.get_by_text("Comparing 2 Runs").wait_for()
    page.get_by_text("Run details").wait_for()
    text = page.inner_text("body")
    for child in sweep_variants:
        assert child.info.run_id in text
        assert child.data.tags["sweep.variant"] in text  # the variant is the run's name
    # The variants log a plain run's keys, so what they differ in is a row of its own.
    latent_row = re.search(rf"^{re.escape(LATENT_KEY)}\t(\S+)\t(\S+)$", text, flags=re.M)
    assert latent_row is not None, f"{LATENT_KEY} is not a row of the parameters table"
    assert latent_row.groups() == tuple(str(size) for size in SWEEP_GRID[LATENT_KEY])

    page.get_by_role("button", name="Close").click()  # MLflow's assistant panel
    for table in ("Parameters", "Metrics", "Tags"):  # what the variants differ in
        page.get_by_label(f"{table} - Show diff only").click()
    page.set_viewport_size({"width": 1600, "height": 1400})  # details, parameters, metrics
    page.get_by_text("Run details", exact=True).evaluate(
        "heading => heading.scrollIntoView({block: 'start'})"
    )
    val_loss = [float(value) for value in _metric_row(page, "val/loss")]
    expected = [child.data.metrics["val/loss"] for child in sweep_variants]
    assert val_loss == pytest.approx(expected, rel=1e-3)
    assert val_loss[0] != val_loss[1]
    for metric in ("train/loss", "val/reconstruction"):
        assert len(_metric_row(page, metric)) == 2
    _save_screenshot(page, tmp_path, "mlflow_compare.png")


def _metric_row(page, metric: str) -> list[str]:
    """The values drawn level with ``metric`` in the compare view's metrics table, left to
    right. Names and values are two virtualised grids (which MLflow does not scroll
    together, so neither is scrolled): a row is cells at the same height."""
    page.get_by_text(metric, exact=True).last.wait_for()
    return page.evaluate(
        """metric => {
          const cells = [...document.querySelectorAll(
            '.ReactVirtualized__Grid__innerScrollContainer > *')];
          const name = cells.find(cell => cell.innerText.trim() === metric);
          const top = name.getBoundingClientRect().top;
          return cells
            .filter(cell => cell.parentElement !== name.parentElement)
            .filter(cell => Math.abs(cell.getBoundingClientRect().top - top) < 2)
            .sort((a, b) => a.getBoundingClientRect().left - b.getBoundingClientRect().left)
            .map(cell => cell.innerText.trim());
        }""",
        metric,
    )

"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from omics_vae.context import parameter_schemas
from omics_vae.params import validate_section
from tests.tiny_training import fast_training_params, tiny_model_input

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"

# What a `kedro run` needs from the project; outputs, caches and environments stay behind.
_PROJECT_PARTS = ("conf", "src", "pyproject.toml", ".telemetry", "notebooks")
_LEFT_BEHIND = shutil.ignore_patterns("local", ".ipynb*", "__pycache__", "*.egg-info")


_JAX_CACHE: dict[str, Path] = {}


def pytest_configure(config: pytest.Config) -> None:
    """One jax compilation cache for the session, in this process and every `kedro`
    process it starts: scib-metrics compiles a few hundred small programs per evaluation
    (half a minute on 2 cores), and the suite evaluates data of the same shapes many
    times (pbmc in the pipeline test, the end-to-end runs and the sweeps). The cache only
    spares compiling again what jax would compile identically."""
    if "JAX_COMPILATION_CACHE_DIR" in os.environ:
        return
    _JAX_CACHE["dir"] = Path(tempfile.mkdtemp(prefix="omics-vae-jax-cache-"))
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(_JAX_CACHE["dir"])
    # jax caches only compilations of a second or more by default; these take ~0.1 s.
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"


def pytest_unconfigure(config: pytest.Config) -> None:
    if "dir" in _JAX_CACHE:
        shutil.rmtree(_JAX_CACHE.pop("dir"), ignore_errors=True)


def _copy_project(destination: Path) -> Path:
    for part in _PROJECT_PARTS:
        source = PROJECT_ROOT / part
        if source.is_dir():
            shutil.copytree(source, destination / part, ignore=_LEFT_BEHIND)
        elif source.exists():
            shutil.copy2(source, destination / part)
    (destination / "conf" / "local").mkdir(exist_ok=True)
    for layer in (PROJECT_ROOT / "data").iterdir():
        if layer.is_dir():
            (destination / "data" / layer.name).mkdir(parents=True, exist_ok=True)
    return destination


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """A copy of the project's configuration in a temporary folder, with empty data/.

    Kedro puts the copy's src/ first on the import path, so the run uses this tree's code
    with the copy's conf/ and an empty data/.
    """
    return _copy_project(tmp_path / "project")


def run_kedro(
    project: Path,
    *args: str,
    check: bool = True,
    timeout: int = 900,
    interpreter_options: tuple[str, ...] = (),
) -> subprocess.CompletedProcess:
    """`kedro <args>` in ``project`` as a user runs it from a terminal; with ``check``, a
    non-zero exit fails the test and shows the end of the output."""
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    # The project's mlflow.yml says where runs go; an inherited address must not win.
    env.pop("MLFLOW_TRACKING_URI", None)
    result = subprocess.run(
        [sys.executable, *interpreter_options, "-m", "kedro", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"`kedro {' '.join(args)}` exited {result.returncode}\n"
            f"--- stdout ---\n{result.stdout[-6000:]}\n--- stderr ---\n{result.stderr[-6000:]}"
        )
    return result


@pytest.fixture
def kedro_cli(project_copy: Path) -> Callable[..., subprocess.CompletedProcess]:
    """Run `kedro <args>` in the project copy, as a user would from a terminal."""

    def run(*args: str, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
        return run_kedro(project_copy, *args, check=check, timeout=timeout)

    return run


@pytest.fixture
def pbmc_3chem_path() -> Path:
    path = SHARED_DATA / "pbmc_3chem.h5ad"
    if not path.exists():
        message = f"{path} is not present (it lives in ../shared/data beside the project)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def write_yaml(path: Path, content: dict) -> None:
    path.write_text(yaml.safe_dump(content, sort_keys=False))


def use_small_simulated_counts(project: Path, processing: dict) -> None:
    """Point a project copy's raw data at 600 simulated cells x 300 genes (2 batches, 3
    cell types), with ``processing`` as its data_processing settings."""
    local = project / "conf" / "local"
    write_yaml(
        local / "catalog.yml",
        {
            "raw_counts": {
                "type": "omics_vae.datasets.SimulatedCountsDataset",
                "n_cells": 600,
                "n_genes": 300,
                "n_batches": 2,
                "n_cell_types": 3,
                "seed": 0,
            }
        },
    )
    write_yaml(local / "parameters_data_processing.yml", {"data_processing": processing})


def use_pbmc_3chem(project: Path, pbmc_path: Path) -> None:
    """Point a project copy's raw data at pbmc_3chem (or cells of it, written to
    ``pbmc_path``) with configuration only, as the README says."""
    local = project / "conf" / "local"
    write_yaml(
        local / "catalog.yml",
        {"raw_counts": {"type": "omics_vae.datasets.H5ADDataset", "filepath": str(pbmc_path)}},
    )
    write_yaml(
        local / "parameters_data_processing.yml",
        {
            "data_processing": {
                "batch_key": "chemistry",
                "cell_type_key": "cell_type",
                # A 1,767-gene panel: the default 200 genes / 500 counts drop half the cells.
                "qc": {"min_genes_per_cell": 50, "min_counts_per_cell": 200},
            }
        },
    )


# scib-metrics that compile in seconds (the full default set takes a minute or more per
# run): for runs whose evaluation is not what their test is about. The default set runs
# end to end in the short run, the pbmc run and tests/pipelines/evaluation.
QUICK_METRICS = {"bio": ["silhouette_label"], "batch": ["ilisi_knn", "graph_connectivity"]}


def use_quick_metrics(project: Path) -> None:
    """Have a project copy's evaluation compute QUICK_METRICS only (a local parameters
    file; parameters merge key by key over conf/base)."""
    write_yaml(
        project / "conf" / "local" / "parameters_evaluation.yml",
        {"evaluation": {"metrics": QUICK_METRICS}},
    )


# Tiny processed data and fast training parameters for the model tests.


@pytest.fixture
def model_input():
    """240 cells x 50 genes shaped like the data_processing output."""
    return tiny_model_input()


@pytest.fixture
def training_params(tmp_path: Path) -> dict[str, Any]:
    """The committed training parameters, shrunk to a few fast epochs."""
    return fast_training_params(tmp_path / "checkpoints")


def validated_block(section: str, values: Any) -> Any:
    """A parameter block as the project's context gives it to nodes: its validated object.

    Args:
        section: The block's dotted key, e.g. ``training`` or ``paired.processing``.
        values: The block as written in YAML.
    """
    top, *path = section.split(".")
    schema = parameter_schemas()[top]
    for part in path:
        schema = schema.model_fields[part].annotation
    return validate_section(section, schema, values)

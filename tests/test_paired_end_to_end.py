"""`kedro run --pipelines paired` as a user runs it: the simulated default and CITE-seq."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import SHARED_DATA
from tests.short_run import paired_short_run, short_run_project

pytestmark = pytest.mark.e2e

# A few seconds of training: enough to beat the permuted control clearly.
FAST = (
    "paired.training.trainer.max_epochs=30,paired.training.trainer.num_threads=1,"
    "paired.training.hyperparameters.n_hidden=32"
)
LAYERS = {"raw", "intermediate", "primary", "feature", "model_input", "models"}
LAYERS |= {"model_output", "reporting"}


def _latest(project: Path, relative: str) -> Path:
    return sorted((project / relative).glob("*/*"))[-1]


def _citeseq_files() -> tuple[Path, Path]:
    files = (SHARED_DATA / "citeseq_rna.csv.gz", SHARED_DATA / "citeseq_adt.csv.gz")
    if not all(f.exists() for f in files):
        message = f"{files} are not present (they live in ../shared/data beside the project)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return files


def test_paired_catalog_entries_have_layers_and_versioned_files():
    catalog = yaml.safe_load(Path("conf/base/catalog_paired.yml").read_text())
    for name, entry in catalog.items():
        assert entry.get("metadata", {}).get("kedro-viz", {}).get("layer") in LAYERS, name
        if "filepath" in entry:
            assert entry.get("versioned") is True, name


def test_paired_runs_on_the_simulated_default(tmp_path_factory):
    # The shared short run's `kedro run --pipelines paired` (notebook 03 reads it too).
    project = paired_short_run(short_run_project(tmp_path_factory))
    summary = pd.read_csv(_latest(project, "data/08_reporting/paired_imputation_summary.csv"))
    assert set(summary["method"]) == {"joint_vae", "ridge", "knn", "mean", "permuted"}


def test_paired_runs_on_citeseq(project_copy, kedro_cli):
    rna, adt = _citeseq_files()
    local = project_copy / "conf" / "local"
    catalog = {
        "platform_a_raw": {"type": "pandas.CSVDataset", "filepath": str(rna)},
        "platform_b_raw": {"type": "pandas.CSVDataset", "filepath": str(adt)},
    }
    (local / "catalog_paired.yml").write_text(yaml.safe_dump(catalog))
    processing = {
        "platform_a": {
            "name": "rna",
            "normalize_total": 10000,
            "log": "log1p",
            "top_variable_features": 500,
        },
        "platform_b": {"name": "protein", "normalize_total": 10000, "log": "log1p"},
    }
    (local / "parameters_paired.yml").write_text(
        yaml.safe_dump({"paired": {"processing": processing}})
    )
    kedro_cli("run", "--pipelines", "paired", "--params", FAST)

    summary = pd.read_csv(_latest(project_copy, "data/08_reporting/paired_imputation_summary.csv"))
    rna_to_protein = summary[summary["direction"] == "rna_to_protein"].set_index("method")
    assert rna_to_protein.loc["joint_vae", "n_features"] == 49
    assert rna_to_protein.loc["joint_vae", "n_samples"] == 100  # 20 % of 500 cells
    pearson = rna_to_protein["pearson"]
    assert pearson["joint_vae"] > pearson["permuted"] + 0.15
    imputed = pd.read_csv(_latest(project_copy, "data/07_model_output/paired_imputed_b.csv"))
    assert imputed.shape == (500, 50)
    assert imputed.iloc[:, 1:].to_numpy().min() > -1  # counts per 10k, not z-scores
    info = yaml.safe_load(
        _latest(project_copy, "data/07_model_output/paired_embedding_info.yml").read_text()
    )
    assert info["data"]["platforms"] == {"a": "rna", "b": "protein"}
    for figure in ("paired_imputation.png", "paired_feature_scatter.png"):
        png = _latest(project_copy, f"data/08_reporting/{figure}")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

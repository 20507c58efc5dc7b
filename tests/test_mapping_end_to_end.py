"""`kedro run --pipelines mapping`: a query of an unseen chemistry mapped onto a model of
the other two, and a query that cannot be mapped refused before any work."""

from __future__ import annotations

import anndata as ad
import pandas as pd
import pytest
import yaml

from tests.conftest import SHARED_DATA, _copy_project, run_kedro, use_pbmc_3chem, write_yaml
from tests.kedro_session import run_in_process

QUERY_CHEMISTRY = "5p"
FAST = {
    "training.trainer.max_epochs": 3,
    "training.trainer.num_threads": 1,
    "mapping.max_epochs": 3,
    "mapping.num_threads": 1,
}


@pytest.fixture(scope="module")
def mapped_project(tmp_path_factory):
    """A model trained on two chemistries of pbmc_3chem, then the third one mapped."""
    project = _copy_project(tmp_path_factory.mktemp("mapping") / "project")
    cells = ad.read_h5ad(SHARED_DATA / "pbmc_3chem.h5ad")
    query = cells.obs["chemistry"] == QUERY_CHEMISTRY
    raw = project / "data" / "01_raw"
    cells[~query].copy().write_h5ad(raw / "reference.h5ad")
    cells[query].copy().write_h5ad(raw / "query.h5ad")
    use_pbmc_3chem(project, raw / "reference.h5ad")
    run_in_process(project, "data_processing", "training", "embedding", params=FAST)
    # The mapping as a user runs it (docs/how-to/map-query.md).
    fast = ",".join(f"{key}={value}" for key, value in FAST.items() if key.startswith("mapping"))
    run_kedro(project, "run", "--pipelines", "mapping", "--params", fast)
    return project


def _latest(project, entry):
    return sorted((project / "data" / entry).glob("*/*"))[-1]


@pytest.mark.e2e
def test_a_query_of_an_unseen_chemistry_is_mapped_beside_the_reference(mapped_project):
    record = yaml.safe_load(_latest(mapped_project, "06_models/mapping_record.json").read_text())
    assert record["new_batches"] == {"chemistry": [QUERY_CHEMISTRY]}
    assert record["epochs"] == 3

    mapped = ad.read_h5ad(_latest(mapped_project, "07_model_output/mapped_embeddings.h5ad"))
    counts = mapped.obs["dataset"].value_counts()
    assert counts["query"] == 430
    assert counts["reference"] > 700
    assert mapped.obsm["X_invae"].shape == (mapped.n_obs, 30)
    query = mapped[mapped.obs["dataset"] == "query"]
    assert query.obs["predicted_cell_type"].notna().all()

    transfer = pd.read_csv(_latest(mapped_project, "08_reporting/mapping_transfer.csv"))
    known = transfer.set_index("cells").loc["query, known types"]
    assert known["n_cells"] == 430
    assert 0 <= known["accuracy"] <= 1
    png = _latest(mapped_project, "08_reporting/mapping_umap.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.e2e
def test_a_query_without_the_models_genes_is_refused_naming_them(mapped_project):
    query = ad.read_h5ad(mapped_project / "data" / "01_raw" / "query.h5ad")
    model_genes = ad.read_h5ad(_latest(mapped_project, "05_model_input/model_input.h5ad")).var_names
    dropped = list(model_genes[:5])
    kept = ~query.var_names.isin(dropped)
    query[:, kept].copy().write_h5ad(mapped_project / "data" / "01_raw" / "query_short.h5ad")
    local = mapped_project / "conf" / "local" / "catalog.yml"
    catalog = yaml.safe_load(local.read_text())
    catalog["query_counts"] = {
        "type": "omics_vae.datasets.H5ADDataset",
        "filepath": "data/01_raw/query_short.h5ad",
    }
    write_yaml(local, catalog)
    before = sorted((mapped_project / "data" / "07_model_output").glob("query_embeddings.h5ad/*"))

    result = run_kedro(mapped_project, "run", "--pipelines", "mapping", check=False)

    assert result.returncode != 0
    output = result.stdout + result.stderr
    flat = " ".join(output.split())
    assert f"Error: query_counts lacks 5 of the {len(model_genes):,} genes the model" in flat
    assert all(gene in flat for gene in dropped)
    after = sorted((mapped_project / "data" / "07_model_output").glob("query_embeddings.h5ad/*"))
    assert after == before

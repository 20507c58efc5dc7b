"""The evaluation pipeline as Kedro runs it: on tiny data and on real PBMCs."""

from __future__ import annotations

import logging
from tempfile import mkdtemp
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from matplotlib.figure import Figure

from omics_vae.pipelines.evaluation import create_pipeline
from omics_vae.store.reuse import ModelStore
from tests.conftest import validated_block

SUCCESS = "Pipeline execution completed successfully"
INPUTS = {"embeddings", "embedding_info", "model_input", "params:evaluation", "trained_models"}
OUTPUTS = {
    "label_transfer",
    "label_suggestions",
    "label_suggestions_figure",
    "labelling_rounds",
    "labelling_rounds_figure",
    "label_transfer_figure",
    "label_transfer_metrics",
    "scib_results",
    "scib_figure",
    "scib_metrics",
    "umap_figure",
    "latent_association",
    "latent_association_figure",
    "anomaly_scores",
    "anomaly_figure",
}
FIGURES = ("scib_figure", "umap_figure", "latent_association_figure", "anomaly_figure")
# Metrics that compile quickly: the wiring, not scib-metrics, is under test here.
QUICK_METRICS = {"bio": ["silhouette_label"], "batch": ["ilisi_knn", "graph_connectivity"]}


class KeptDataset(MemoryDataset):
    """A MemoryDataset the runner cannot empty: in a project run these outputs are files,
    here the test reads them after their last consumer has run."""

    def _release(self) -> None:
        pass


def make_catalog(parameters: dict[str, Any], **inputs: Any) -> DataCatalog:
    """The inputs and parameters, and a place for every output (kept after the run); an
    empty MLflow store of earlier runs unless ``trained_models`` is given."""
    datasets: dict[str, Any] = {name: KeptDataset() for name in OUTPUTS}
    inputs.setdefault("embedding_info", {"model": "invae", "data": {"fingerprint": "f" * 16}})
    inputs.setdefault("trained_models", ModelStore(f"sqlite:///{mkdtemp()}/mlflow.db"))
    datasets.update({name: MemoryDataset(data) for name, data in inputs.items()})
    datasets["params:evaluation"] = MemoryDataset(validated_block("evaluation", parameters))
    return DataCatalog(datasets=datasets)


def run(pipeline, catalog: DataCatalog, caplog) -> None:
    caplog.set_level(logging.INFO, logger="kedro")
    SequentialRunner().run(pipeline, catalog)
    assert SUCCESS in caplog.text


def test_pipeline_interface():
    pipeline = create_pipeline()

    assert pipeline.inputs() == INPUTS
    assert pipeline.all_outputs() - OUTPUTS == {"evaluation_cells", "umap_coordinates"}
    assert {node.name for node in pipeline.nodes} == {
        "prepare_evaluation_cells_node",
        "benchmark_integration_node",
        "scib_results_to_metrics_node",
        "label_transfer_node",
        "label_transfer_metrics_node",
        "suggest_cells_to_label_node",
        "labelling_rounds_node",
        "compute_umaps_node",
        "plot_umaps_node",
        "compute_latent_association_node",
        "plot_latent_association_node",
        "score_anomalies_node",
        "plot_anomalies_node",
    }


def test_full_pipeline_on_tiny_data(embeddings, model_input, parameters, caplog):
    parameters["metrics"] = QUICK_METRICS
    catalog = make_catalog(parameters, embeddings=embeddings, model_input=model_input)

    run(create_pipeline(), catalog, caplog)

    results = catalog.load("scib_results")
    assert list(results["embedding"]) == ["invae", "pca"]
    assert {"Silhouette label", "iLISI", "Graph connectivity", "Total"} <= set(results.columns)
    metrics = catalog.load("scib_metrics")
    assert {"scib/ilisi", "scib/total", "scib/pca/ilisi", "scib/pca/total"} <= set(metrics)
    assert not any(key.startswith("scib/invae") for key in metrics)
    association = catalog.load("latent_association")
    assert set(association["latent"]) == {"z_i", "z_s"}
    anomalies = catalog.load("anomaly_scores")
    assert len(anomalies) == embeddings.n_obs
    assert anomalies["flagged"].sum() == 3
    for name in FIGURES:
        assert isinstance(catalog.load(name), Figure), name
    # A model without a label classifier: nothing to suggest, one round of nothing.
    assert catalog.load("label_suggestions").empty
    assert len(catalog.load("labelling_rounds")) == 1
    # The inputs are left as they were.
    assert list(embeddings.obs.columns) == ["batch", "cell_type", "split", "reconstruction_error"]
    assert "X_pca" not in model_input.obsm


def test_statistics_and_anomalies_slice_needs_no_benchmark(
    embeddings, model_input, parameters, caplog
):
    pipeline = create_pipeline().to_nodes("compute_latent_association_node", "score_anomalies_node")
    catalog = make_catalog(parameters, embeddings=embeddings, model_input=model_input)

    run(pipeline, catalog, caplog)

    assert {node.name for node in pipeline.nodes} == {
        "prepare_evaluation_cells_node",
        "compute_latent_association_node",
        "score_anomalies_node",
    }
    assert len(catalog.load("latent_association")) == 24


def test_embeddings_of_another_data_version_stop_the_run_first(embeddings, model_input, parameters):
    catalog = make_catalog(parameters, embeddings=embeddings, model_input=model_input[:-1].copy())

    with pytest.raises(ValueError, match="--load-versions model_input:"):
        SequentialRunner().run(create_pipeline(), catalog)
    assert not catalog.exists("evaluation_cells")


@pytest.fixture
def pbmc(pbmc_3chem_path) -> tuple[ad.AnnData, ad.AnnData]:
    """Real PBMCs from three 10x chemistries, processed as model_input, and a PCA of them
    standing in for a model's embedding (a scVI-like model: one latent, no z_s)."""
    raw = ad.read_h5ad(pbmc_3chem_path)
    model_input = raw.copy()
    model_input.layers["counts"] = model_input.X.copy()
    sc.pp.normalize_total(model_input, target_sum=1e4)
    sc.pp.log1p(model_input)
    sc.pp.highly_variable_genes(model_input, n_top_genes=500, subset=True)
    model_input.obs["split"] = pd.Categorical(
        np.random.default_rng(0).choice(["train", "val", "test"], model_input.n_obs)
    )
    embeddings = ad.AnnData(
        np.zeros((model_input.n_obs, 0), dtype=np.float32),
        obs=model_input.obs.copy(),
        obsm={"X_scvi_vae": sc.pp.pca(model_input.X, n_comps=20, random_state=1)},
    )
    embeddings.obs["reconstruction_error"] = np.log(model_input.obs["nUMI"].to_numpy())
    embeddings.uns["embedding"] = {
        "model": "scvi_vae",
        "latent_key": "X_scvi_vae",
        "technical_key": None,
        "batch_key": "chemistry",
        "cell_type_key": "cell_type",
        "supervised": False,
    }
    return embeddings, model_input


def test_real_pbmc_data_runs_through(pbmc, parameters, caplog):
    """Nine cell types, two of them tiny (3 HSC, 7 MK), and strong chemistry effects."""
    embeddings, model_input = pbmc
    catalog = make_catalog(parameters, embeddings=embeddings, model_input=model_input)

    run(create_pipeline(), catalog, caplog)

    results = catalog.load("scib_results").set_index("embedding")
    assert list(results.index) == ["scvi_vae", "pca"]
    assert not results["supervised"].any()
    scores = results.drop(columns=["role", "supervised", "n_cells", "note"])
    assert scores.notna().all().all()
    assert ((scores >= 0) & (scores <= 1)).all().all()
    # The stand-in "model" is a PCA of the same data: it scores like the PCA baseline.
    np.testing.assert_allclose(scores.loc["scvi_vae"], scores.loc["pca"], atol=0.1)
    assert results.loc["pca", "Bio conservation"] > 0.5
    metrics = catalog.load("scib_metrics")
    assert metrics["scib/total"]["value"] == pytest.approx(results.loc["scvi_vae", "Total"])

    association = catalog.load("latent_association")
    assert set(association["latent"]) == {"z"}
    by_covariate = association.groupby("covariate")["eta_squared"].max()
    assert by_covariate["cell_type"] > 0.8  # PC1 splits myeloid from lymphoid cells
    assert association.loc[association["covariate"] == "cell_type", "q_value"].min() < 1e-10

    anomalies = catalog.load("anomaly_scores")
    assert len(anomalies) == 1200
    assert anomalies["flagged"].sum() == 12
    assert set(anomalies["batch"]) == {"3pv1", "3pv2", "5p"}
    for name in FIGURES:
        assert isinstance(catalog.load(name), Figure), name
    # A model without a label classifier: nothing to suggest, one round of nothing.
    assert catalog.load("label_suggestions").empty
    assert len(catalog.load("labelling_rounds")) == 1

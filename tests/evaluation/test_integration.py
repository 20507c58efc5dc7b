"""scib-metrics' benchmark of the model's latent and the baselines, and its MLflow metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from omics_vae.evaluation.cells import EvaluationInputError
from omics_vae.evaluation.integration import (
    SCORE_COLUMNS,
    benchmark_integration,
    exact_neighbours,
    neighbour_search,
    scib_results_to_metrics,
)
from omics_vae.evaluation.preparation import prepare_evaluation_cells

from .conftest import N_CELLS, validated

BATCH_ONLY = ["ilisi_knn", "graph_connectivity"]


class TestBenchmarkIntegration:
    def test_scores_the_model_against_the_unintegrated_baseline(self, evaluation_cells, parameters):
        results, figure = benchmark_integration(evaluation_cells, validated(parameters))

        assert list(results["embedding"]) == ["invae", "pca"]
        assert list(results["role"]) == ["model", "baseline"]
        assert list(results["supervised"]) == [True, False]
        assert (results["n_cells"] == N_CELLS).all()
        assert list(results.columns[-4:]) == [*SCORE_COLUMNS, "note"]
        model, pca = (results.iloc[i] for i in range(2))
        # The model's latent mixes the batches that the unintegrated PCA separates ...
        for metric in ("iLISI", "KBET", "BRAS", "PCR comparison", "Batch correction"):
            assert model[metric] > pca[metric] + 0.3, metric
        # ... and both keep the cell types apart.
        assert model["KMeans ARI"] > 0.9
        assert model["Bio conservation"] > 0.8
        assert model["Total"] == pytest.approx(
            0.4 * model["Batch correction"] + 0.6 * model["Bio conservation"]
        )
        assert "supervised" in model["note"]
        assert isinstance(figure, Figure)
        title = figure._suptitle.get_text()
        assert "unscaled" in title
        assert "supervised" in title

    def test_without_cell_types_only_batch_metrics_run_and_the_table_says_so(
        self, embeddings, model_input, parameters
    ):
        embeddings.uns["embedding"]["cell_type_key"] = None
        parameters["metrics"]["batch"] = BATCH_ONLY
        parameters["baselines"]["pca"] = False
        cells = prepare_evaluation_cells(embeddings, model_input, validated(parameters))

        results, figure = benchmark_integration(cells, validated(parameters))

        assert list(results["embedding"]) == ["invae"]
        assert {"iLISI", "Graph connectivity", *SCORE_COLUMNS} <= set(results.columns)
        assert not {"KMeans NMI", "Isolated labels", "cLISI"} & set(results.columns)
        assert results["Bio conservation"].isna().all()
        assert results["Total"].isna().all()
        assert results["Batch correction"].notna().all()
        assert not results["supervised"].any()
        assert results["note"].str.contains("no cell-type key").all()
        assert "batch correction only" in figure._suptitle.get_text()
        # Every score is written in the heat table, even for a single embedding.
        written = {text.get_text() for text in figure.get_axes()[0].texts}
        for column in ("iLISI", "Graph connectivity", "Batch correction"):
            assert f"{results.loc[0, column]:.2f}" in written

    def test_without_any_computable_metric_the_error_says_why(
        self, embeddings, model_input, parameters
    ):
        embeddings.uns["embedding"]["cell_type_key"] = None
        parameters["metrics"]["batch"] = []
        cells = prepare_evaluation_cells(embeddings, model_input, validated(parameters))

        with pytest.raises(EvaluationInputError, match="no cell-type key"):
            benchmark_integration(cells, validated(parameters))

    def test_the_subsample_is_what_the_benchmark_scores(self, embeddings, model_input, parameters):
        parameters.update(max_cells=150)
        parameters["metrics"] = {"bio": [], "batch": BATCH_ONLY}
        cells = prepare_evaluation_cells(embeddings, model_input, validated(parameters))

        results, _ = benchmark_integration(cells, validated(parameters))

        assert (results["n_cells"] == cells.obs["in_subsample"].sum()).all()
        assert results["n_cells"].iloc[0] < N_CELLS

    def test_exact_search_keeps_pynndescent_out_of_kbet(self, evaluation_cells, monkeypatch):
        """pynndescent's numba compilation would cost about a minute per run."""
        import scib_metrics
        import scib_metrics.nearest_neighbors._pynndescent as scib_pynndescent

        def refuse(*args, **kwargs):
            raise AssertionError("pynndescent was called")

        monkeypatch.setattr(scib_pynndescent, "NNDescent", refuse)
        latent = evaluation_cells.obsm["X_invae"]
        neighbours = exact_neighbours(latent, n_neighbors=50)
        batches = evaluation_cells.obs["batch"].to_numpy()
        labels = evaluation_cells.obs["cell_type"].to_numpy()

        with neighbour_search("exact"):
            score = scib_metrics.kbet_per_label(neighbours, batches, labels)
        with neighbour_search("pynndescent"), pytest.raises(AssertionError, match="pynndescent"):
            scib_metrics.kbet_per_label(neighbours, batches, labels)

        assert 0.5 < score <= 1  # batches are mixed within each cell type of z_i
        assert (neighbours.indices[:, 0] == np.arange(N_CELLS)).all()  # each cell first
        assert scib_metrics.nearest_neighbors.pynndescent is not exact_neighbours  # restored


def test_scib_metrics_use_the_same_keys_for_every_model():
    results = pd.DataFrame(
        {
            "embedding": ["scvi_vae", "pca"],
            "role": ["model", "baseline"],
            "supervised": [False, False],
            "n_cells": [10, 10],
            "KMeans NMI": [0.8, 0.7],
            "PCR comparison": [0.5, 0.0],
            "Batch correction": [0.6, 0.1],
            "Bio conservation": [np.nan, np.nan],
            "Total": [np.nan, np.nan],
            "note": ["", ""],
        }
    )

    metrics = scib_results_to_metrics(results)

    assert metrics == {
        "scib/kmeans_nmi": {"value": 0.8, "step": 0},
        "scib/pcr_comparison": {"value": 0.5, "step": 0},
        "scib/batch_correction": {"value": 0.6, "step": 0},
        "scib/pca/kmeans_nmi": {"value": 0.7, "step": 0},
        "scib/pca/pcr_comparison": {"value": 0.0, "step": 0},
        "scib/pca/batch_correction": {"value": 0.1, "step": 0},
    }
    assert all(isinstance(item["value"], float) for item in metrics.values())


def one_batch(model_input, embeddings):
    """The fixtures' cells, all of one batch."""
    for adata in (model_input, embeddings):
        adata.obs["batch"] = pd.Categorical(["b0"] * adata.n_obs)
    return model_input, embeddings


class TestOneBatch:
    """A dataset of one batch crashed the benchmark (scib-metrics' BRAS: "No objects to
    concatenate"); batch correction has nothing to measure there."""

    def test_batch_metrics_are_skipped_with_a_note_and_bio_metrics_computed(
        self, model_input, embeddings, parameters, caplog
    ):
        model_input, embeddings = one_batch(model_input, embeddings)
        cells = prepare_evaluation_cells(embeddings, model_input, validated(parameters))

        with caplog.at_level("WARNING", logger="omics_vae.evaluation"):
            results, figure = benchmark_integration(cells, validated(parameters))

        assert list(results["embedding"]) == ["invae", "pca"]
        assert results["KMeans ARI"].notna().all()
        assert results["Bio conservation"].notna().all()
        assert results["Batch correction"].isna().all()
        assert not {"BRAS", "iLISI", "KBET", "PCR comparison"} & set(results.columns)
        assert (
            results["note"]
            .str.contains("one batch ('b0'): batch correction not computed", regex=False)
            .all()
        )
        assert "all of one batch (obs['batch'] = 'b0')" in caplog.text
        assert "one batch ('b0')" in figure._suptitle.get_text()
        metrics = scib_results_to_metrics(results)
        assert "scib/kmeans_ari" in metrics
        assert "scib/batch_correction" not in metrics

    def test_without_cell_types_nothing_is_scored_and_the_table_says_why(
        self, model_input, embeddings, parameters
    ):
        model_input, embeddings = one_batch(model_input, embeddings)
        embeddings.uns["embedding"]["cell_type_key"] = None
        cells = prepare_evaluation_cells(embeddings, model_input, validated(parameters))

        results, figure = benchmark_integration(cells, validated(parameters))

        assert list(results["embedding"]) == ["invae", "pca"]
        assert results[list(SCORE_COLUMNS)].isna().all().all()
        assert results["note"].str.contains("batch correction not computed").all()
        assert results["note"].str.contains("bio conservation not computed").all()
        assert scib_results_to_metrics(results) == {}
        assert "No metric computed for invae, pca" in {t.get_text() for t in figure.texts} | {
            t.get_text() for axis in figure.get_axes() for t in axis.texts
        }

    def test_harmony_is_not_run_on_one_batch(self, model_input, embeddings, parameters, caplog):
        model_input, embeddings = one_batch(model_input, embeddings)
        parameters["baselines"]["harmony"] = True

        with caplog.at_level("INFO", logger="omics_vae.evaluation"):
            cells = prepare_evaluation_cells(embeddings, model_input, validated(parameters))

        assert "harmony" not in cells.uns["evaluation"]["embeddings"]
        assert "Harmony baseline skipped: the evaluated cells are all of one batch" in caplog.text

"""Evaluation nodes on tiny data whose latent dimensions carry known signals."""

from __future__ import annotations

import importlib.machinery
import logging
import sys
import types
from dataclasses import fields

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from matplotlib.figure import Figure
from scipy import stats
from statsmodels.stats.anova import anova_lm

from omics_vae.params import InvalidParametersError, validate_section
from omics_vae.pipelines.evaluation.nodes import (
    SCORE_COLUMNS,
    EvaluationInputError,
    benchmark_integration,
    compute_latent_association,
    compute_umaps,
    eta_squared,
    exact_neighbours,
    neighbour_search,
    plot_anomalies,
    plot_latent_association,
    plot_umaps,
    prepare_evaluation_cells,
    scib_results_to_metrics,
    score_anomalies,
)
from omics_vae.schemas.evaluation import (
    BATCH_METRICS,
    BIO_METRICS,
    EvaluationParams,
)

from .conftest import BATCH_DIMS, N_CELLS, TYPE_DIMS

BATCH_ONLY = ["ilisi_knn", "graph_connectivity"]


# ---- parameters -------------------------------------------------------------------------


class TestParameters:
    def test_committed_file_matches_the_schema(self, parameters):
        config = EvaluationParams.model_validate(parameters)

        assert config.splits is None
        assert "kbet_per_label" in config.metrics.batch
        assert config.baselines.n_comps == 30

    def test_metric_names_are_the_fields_of_scib_metrics(self):
        from scib_metrics.benchmark import BatchCorrection, BioConservation

        assert tuple(f.name for f in fields(BioConservation)) == BIO_METRICS
        assert tuple(f.name for f in fields(BatchCorrection)) == BATCH_METRICS

    def test_an_unknown_metric_is_refused_with_the_valid_names(self, parameters):
        parameters["metrics"]["batch"] = ["kbet", "ilisi_knn"]

        with pytest.raises(InvalidParametersError) as error:
            validate_section("evaluation", EvaluationParams, parameters)

        message = str(error.value)
        assert "evaluation.metrics.batch.0" in message
        assert "'kbet'" in message
        for name in BATCH_METRICS:
            assert name in message

    def test_a_typo_names_the_key(self, parameters):
        parameters["anomaly"]["fraktion"] = 0.1

        with pytest.raises(InvalidParametersError, match=r"evaluation\.anomaly\.fraktion"):
            validate_section("evaluation", EvaluationParams, parameters)

    def test_no_metric_at_all_is_refused(self, parameters):
        parameters["metrics"] = {"bio": [], "batch": []}

        with pytest.raises(InvalidParametersError, match="at least one metric"):
            validate_section("evaluation", EvaluationParams, parameters)


# ---- preparation ------------------------------------------------------------------------


class TestPrepareEvaluationCells:
    def test_holds_the_latents_and_a_pca_baseline(self, evaluation_cells, embeddings, caplog):
        cells = evaluation_cells

        assert cells.n_obs == N_CELLS
        assert cells.n_vars == 0
        np.testing.assert_array_equal(cells.obsm["X_invae"], embeddings.obsm["X_invae"])
        assert cells.obsm["X_pca"].shape == (N_CELLS, 30)
        assert cells.uns["evaluation"]["embeddings"] == {"invae": "X_invae", "pca": "X_pca"}
        assert cells.obs["in_subsample"].all()

    def test_harmony_is_skipped_with_a_log_line_without_harmonypy(
        self, embeddings, model_input, parameters, monkeypatch, caplog
    ):
        monkeypatch.setitem(sys.modules, "harmonypy", None)  # find_spec: not installed
        caplog.set_level(logging.INFO)

        cells = prepare_evaluation_cells(embeddings, model_input, parameters)

        assert "harmony" not in cells.uns["evaluation"]["embeddings"]
        assert "Harmony baseline skipped: harmonypy is not installed" in caplog.text

    @pytest.mark.parametrize("components_first", [True, False])
    def test_harmony_runs_when_installed_whatever_its_output_orientation(
        self, embeddings, model_input, parameters, monkeypatch, components_first
    ):
        """harmonypy < 0.1 returns components x cells, later versions cells x components."""
        calls = []

        def run_harmony(data, meta, keys, random_state):
            calls.append((data.shape, list(meta.columns), keys, random_state))
            corrected = (
                data
                - pd.DataFrame(data).groupby(meta[keys[0]].to_numpy()).transform("mean").to_numpy()
            )
            return types.SimpleNamespace(Z_corr=corrected.T if components_first else corrected)

        fake = types.ModuleType("harmonypy")
        fake.__spec__ = importlib.machinery.ModuleSpec("harmonypy", None)
        fake.run_harmony = run_harmony
        monkeypatch.setitem(sys.modules, "harmonypy", fake)

        cells = prepare_evaluation_cells(embeddings, model_input, parameters)

        assert calls == [((N_CELLS, 30), ["batch"], ["batch"], 0)]
        assert cells.uns["evaluation"]["embeddings"]["harmony"] == "X_harmony"
        harmony = cells.obsm["X_harmony"]
        assert harmony.shape == (N_CELLS, 30)
        batch_means = pd.DataFrame(harmony).groupby(cells.obs["batch"].to_numpy()).mean()
        np.testing.assert_allclose(batch_means.to_numpy(), 0, atol=1e-4)

    def test_cells_in_another_order_are_aligned(self, embeddings, model_input, parameters):
        shuffled = model_input[np.random.default_rng(0).permutation(N_CELLS)].copy()

        aligned = prepare_evaluation_cells(embeddings, shuffled, parameters)
        reference = prepare_evaluation_cells(embeddings, model_input, parameters)

        # The PCA is fitted on the same cells in the embedding's order: the same baseline.
        np.testing.assert_allclose(
            np.abs(aligned.obsm["X_pca"][:, :3]), np.abs(reference.obsm["X_pca"][:, :3]), atol=1e-4
        )

    def test_cells_of_another_data_version_are_refused_with_the_fix(
        self, embeddings, model_input, parameters
    ):
        other_version = model_input[20:].copy()

        with pytest.raises(EvaluationInputError) as error:
            prepare_evaluation_cells(embeddings, other_version, parameters)

        message = str(error.value)
        assert "another version of the processed data" in message
        assert "20 embedded cells are not in model_input" in message
        assert "kedro run --pipeline embedding" in message
        assert "--load-versions model_input:" in message

    @pytest.mark.parametrize(("field", "key"), [("batch_key", "sample"), ("cell_type_key", "ct")])
    def test_an_obs_key_missing_from_the_embeddings_is_named(
        self, embeddings, model_input, parameters, field, key
    ):
        embeddings.uns["embedding"][field] = key

        with pytest.raises(EvaluationInputError) as error:
            prepare_evaluation_cells(embeddings, model_input, parameters)

        message = str(error.value)
        assert f"uns['embedding']['{field}'] names obs['{key}']" in message
        assert "'batch', 'cell_type', 'reconstruction_error', 'split'" in message

    def test_a_latent_missing_from_obsm_is_named(self, embeddings, model_input, parameters):
        del embeddings.obsm["X_invae_technical"]

        with pytest.raises(EvaluationInputError, match=r"obsm\['X_invae_technical'\], absent"):
            prepare_evaluation_cells(embeddings, model_input, parameters)

    def test_a_diverged_latent_is_refused(self, embeddings, model_input, parameters):
        embeddings.obsm["X_invae"][5, 0] = np.nan

        with pytest.raises(EvaluationInputError, match="non-finite values in 1 cells"):
            prepare_evaluation_cells(embeddings, model_input, parameters)

    def test_splits_select_cells(self, embeddings, model_input, parameters):
        parameters["splits"] = ["test"]

        cells = prepare_evaluation_cells(embeddings, model_input, parameters)

        assert cells.n_obs == int((embeddings.obs["split"] == "test").sum())
        assert set(cells.obs["split"]) == {"test"}

    def test_an_unknown_split_is_refused(self, embeddings, model_input, parameters):
        parameters["splits"] = ["holdout"]

        with pytest.raises(EvaluationInputError, match=r"\['holdout'\].*splits present"):
            prepare_evaluation_cells(embeddings, model_input, parameters)

    def test_subsample_is_stratified_seeded_and_keeps_every_group(
        self, embeddings, model_input, parameters
    ):
        parameters["max_cells"] = 150

        first = prepare_evaluation_cells(embeddings, model_input, parameters)
        second = prepare_evaluation_cells(embeddings, model_input, parameters)

        kept = first.obs[first.obs["in_subsample"]]
        assert first.n_obs == N_CELLS  # statistics and anomalies keep every cell
        # Half of each batch x cell type group of 33 or 34 cells.
        sizes = kept.groupby(["batch", "cell_type"], observed=True).size()
        assert len(sizes) == 9
        assert sizes.between(16, 17).all()
        assert 140 <= len(kept) <= 150
        np.testing.assert_array_equal(first.obs["in_subsample"], second.obs["in_subsample"])


# ---- integration benchmark --------------------------------------------------------------


class TestBenchmarkIntegration:
    def test_scores_the_model_against_the_unintegrated_baseline(self, evaluation_cells, parameters):
        results, figure = benchmark_integration(evaluation_cells, parameters)

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
        cells = prepare_evaluation_cells(embeddings, model_input, parameters)

        results, figure = benchmark_integration(cells, parameters)

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
        cells = prepare_evaluation_cells(embeddings, model_input, parameters)

        with pytest.raises(EvaluationInputError, match="no cell-type key"):
            benchmark_integration(cells, parameters)

    def test_the_subsample_is_what_the_benchmark_scores(self, embeddings, model_input, parameters):
        parameters.update(max_cells=150)
        parameters["metrics"] = {"bio": [], "batch": BATCH_ONLY}
        cells = prepare_evaluation_cells(embeddings, model_input, parameters)

        results, _ = benchmark_integration(cells, parameters)

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


# ---- UMAPs ------------------------------------------------------------------------------


class TestUmaps:
    def test_one_seeded_layout_per_embedding(self, evaluation_cells, parameters):
        first = compute_umaps(evaluation_cells, parameters)
        second = compute_umaps(evaluation_cells, parameters)

        assert len(first) == 2 * N_CELLS
        assert first.groupby("embedding").size().to_dict() == {"invae": N_CELLS, "pca": N_CELLS}
        assert list(first.columns) == [
            "cell", "embedding", "role", "umap_1", "umap_2", "batch", "cell_type"
        ]  # fmt: skip
        pd.testing.assert_frame_equal(first, second)
        # The model's layout separates the cell types: centroids far apart.
        model = first[first["embedding"] == "invae"]
        centroids = model.groupby("cell_type")[["umap_1", "umap_2"]].mean().to_numpy()
        spread = model.groupby("cell_type")[["umap_1", "umap_2"]].std().to_numpy().max()
        gaps = np.linalg.norm(centroids[:, None] - centroids[None], axis=-1)
        assert gaps[np.triu_indices(3, 1)].min() > 3 * spread

    def test_grid_has_a_row_per_embedding_and_a_column_per_colouring(self, evaluation_cells):
        coordinates = _fake_umaps(evaluation_cells)

        figure = plot_umaps(coordinates)

        panels = [axis for axis in figure.get_axes() if axis.get_title()]
        assert [axis.get_title() for axis in panels] == [
            "invae — batch",
            "invae — cell type",
            "pca — batch",
            "pca — cell type",
        ]
        legend_titles = [axis.get_legend().get_title().get_text() for axis in panels[:2]]
        assert legend_titles == ["batch", "cell type"]
        assert [t.get_text() for t in panels[1].get_legend().get_texts()] == ["B", "NK", "T"]

    def test_without_cell_types_only_batch_is_drawn(self, evaluation_cells):
        coordinates = _fake_umaps(evaluation_cells)
        coordinates["cell_type"] = None

        figure = plot_umaps(coordinates)

        assert [axis.get_title() for axis in figure.get_axes()] == [
            "invae — batch",
            "pca — batch",
        ]


def _fake_umaps(cells) -> pd.DataFrame:
    """UMAP-shaped coordinates without the cost of a UMAP."""
    frames = []
    for name, key in cells.uns["evaluation"]["embeddings"].items():
        frames.append(
            pd.DataFrame(
                {
                    "cell": cells.obs_names,
                    "embedding": name,
                    "role": "model" if name == "invae" else "baseline",
                    "umap_1": cells.obsm[key][:, 0],
                    "umap_2": cells.obsm[key][:, 1],
                    "batch": cells.obs["batch"].astype(str).to_numpy(),
                    "cell_type": cells.obs["cell_type"].astype(str).to_numpy(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


# ---- latent association -----------------------------------------------------------------


class TestLatentAssociation:
    def test_z_i_carries_cell_type_and_z_s_carries_batch(self, evaluation_cells):
        table = compute_latent_association(evaluation_cells)

        assert list(table.columns) == [
            "latent", "dimension", "covariate", "obs_key", "n_groups",
            "eta_squared", "kruskal_h", "p_value", "q_value",
        ]  # fmt: skip
        assert len(table) == (8 + 4) * 2
        eta = table.set_index(["latent", "covariate", "dimension"])["eta_squared"]
        q = table.set_index(["latent", "covariate", "dimension"])["q_value"]
        for dim in TYPE_DIMS:
            assert eta["z_i", "cell_type", dim] > 0.6
            assert eta["z_i", "batch", dim] < 0.05
            assert q["z_i", "cell_type", dim] < 1e-10
        for dim in BATCH_DIMS:
            assert eta["z_s", "batch", dim] > 0.6
            assert eta["z_s", "cell_type", dim] < 0.05
            assert q["z_s", "batch", dim] < 1e-10
        noise = table[(table["latent"] == "z_i") & ~table["dimension"].isin(TYPE_DIMS)]
        assert (noise["eta_squared"] < 0.05).all()
        assert (table["q_value"] >= table["p_value"]).all()

    def test_eta_squared_is_the_one_way_anova_share_of_variance(self, evaluation_cells):
        latent = evaluation_cells.obsm["X_invae"].astype(np.float64)
        groups = evaluation_cells.obs["cell_type"].astype(str).to_numpy()
        frame = pd.DataFrame({"value": latent[:, 0], "group": groups})

        anova = anova_lm(smf.ols("value ~ C(group)", data=frame).fit())
        expected = anova.loc["C(group)", "sum_sq"] / anova["sum_sq"].sum()

        computed = eta_squared(latent, pd.factorize(groups)[0])
        assert computed[0] == pytest.approx(expected, rel=1e-9)

    def test_kruskal_wallis_matches_scipy_per_dimension(self, evaluation_cells):
        table = compute_latent_association(evaluation_cells)
        latent = evaluation_cells.obsm["X_invae_technical"].astype(np.float64)
        batches = evaluation_cells.obs["batch"].to_numpy()

        expected = stats.kruskal(*(latent[batches == b, 3] for b in ("b0", "b1", "b2")))

        row = table.query("latent == 'z_s' and covariate == 'batch' and dimension == 3").iloc[0]
        assert row["kruskal_h"] == pytest.approx(expected.statistic)
        assert row["p_value"] == pytest.approx(expected.pvalue)

    def test_a_model_without_technical_latent_has_one_latent_z(
        self, embeddings, model_input, parameters
    ):
        del embeddings.obsm["X_invae_technical"]
        embeddings.uns["embedding"].update(model="scvi_vae", technical_key=None)
        cells = prepare_evaluation_cells(embeddings, model_input, parameters)

        table = compute_latent_association(cells)

        assert set(table["latent"]) == {"z"}
        assert len(table) == 8 * 2

    def test_heat_map_has_a_panel_per_latent(self, evaluation_cells):
        figure = plot_latent_association(compute_latent_association(evaluation_cells))

        panels = [axis for axis in figure.get_axes() if axis.get_ylabel().endswith("dimension")]
        assert [axis.get_ylabel() for axis in panels] == ["z_i dimension", "z_s dimension"]
        assert panels[0].get_images()[0].get_array().shape == (8, 2)
        assert panels[1].get_images()[0].get_array().shape == (4, 2)


# ---- anomalies --------------------------------------------------------------------------


OUTLIER = "cell42"


def _with_outlier(embeddings):
    position = embeddings.obs_names.get_loc(OUTLIER)
    embeddings.obsm["X_invae"][position] = 25.0
    embeddings.obs.loc[OUTLIER, "reconstruction_error"] = 60.0
    return embeddings


class TestAnomalies:
    @pytest.mark.parametrize("method", ["isolation_forest", "knn"])
    @pytest.mark.parametrize("combine", ["rank", "zscore"])
    def test_an_injected_outlier_tops_the_ranking_and_is_flagged(
        self, embeddings, model_input, parameters, method, combine
    ):
        parameters["anomaly"].update(method=method, combine=combine)
        cells = prepare_evaluation_cells(_with_outlier(embeddings), model_input, parameters)

        scores = score_anomalies(cells, parameters)

        assert list(scores.columns) == [
            "rank", "cell", "batch", "cell_type", "split", "library_size", "latent_score",
            "reconstruction_error", "reconstruction_score", "combined_score", "flagged",
        ]  # fmt: skip
        assert len(scores) == N_CELLS
        top = scores.iloc[0]
        assert top["cell"] == OUTLIER
        assert top["rank"] == 1
        assert top["flagged"]
        assert top["reconstruction_error"] == 60.0
        assert scores["flagged"].sum() == 3  # ceil(0.01 x 300)
        assert scores["combined_score"].is_monotonic_decreasing
        assert scores.loc[scores["cell"] == OUTLIER, "latent_score"].item() == (
            scores["latent_score"].max()
        )

    def test_rank_average_is_the_mean_percentile_of_both_scores(self, evaluation_cells, parameters):
        scores = score_anomalies(evaluation_cells, parameters)

        expected = (
            stats.rankdata(scores["latent_score"]) + stats.rankdata(scores["reconstruction_score"])
        ) / (2 * len(scores))
        np.testing.assert_allclose(scores["combined_score"], expected)

    def test_depth_adjustment_keeps_deep_cells_from_looking_anomalous(
        self, embeddings, model_input, parameters
    ):
        """The NLL of a well-modelled cell grows with its counts; a badly modelled cell's
        NLL is high for its depth."""
        rng = np.random.default_rng(3)
        model_input.layers["counts"] *= rng.lognormal(0, 0.5, (N_CELLS, 1)).round(1)
        library_size = model_input.layers["counts"].sum(axis=1)
        noise = rng.lognormal(0, 0.05, N_CELLS)
        embeddings.obs["reconstruction_error"] = 3.0 * library_size * noise
        embeddings.obs.loc[OUTLIER, "reconstruction_error"] *= 2
        cells = prepare_evaluation_cells(embeddings, model_input, parameters)

        adjusted = score_anomalies(cells, parameters)
        parameters["anomaly"]["reconstruction"] = "raw"
        raw = score_anomalies(cells, parameters)

        np.testing.assert_allclose(adjusted["library_size"].sort_values(), np.sort(library_size))
        assert stats.spearmanr(raw["reconstruction_score"], raw["library_size"])[0] > 0.9
        depth_trend = stats.spearmanr(adjusted["reconstruction_score"], adjusted["library_size"])
        assert abs(depth_trend[0]) < 0.2
        top = adjusted.sort_values("reconstruction_score", ascending=False).iloc[0]
        assert top["cell"] == OUTLIER

    def test_without_reconstruction_error_the_latent_alone_decides(
        self, embeddings, model_input, parameters
    ):
        embeddings = _with_outlier(embeddings)
        embeddings.obs = embeddings.obs.drop(columns="reconstruction_error")
        cells = prepare_evaluation_cells(embeddings, model_input, parameters)

        scores = score_anomalies(cells, parameters)

        assert scores["reconstruction_error"].isna().all()
        assert scores.iloc[0]["cell"] == OUTLIER
        assert scores["combined_score"].is_monotonic_decreasing
        assert scores["latent_score"].is_monotonic_decreasing

    def test_figure_rings_the_flagged_cells(self, embeddings, model_input, parameters):
        cells = prepare_evaluation_cells(_with_outlier(embeddings), model_input, parameters)
        scores = score_anomalies(cells, parameters)

        figure = plot_anomalies(_fake_umaps(cells), scores, parameters)

        axis = figure.get_axes()[0]
        coloured, ringed = axis.collections[:2]
        assert len(coloured.get_offsets()) == N_CELLS
        assert len(ringed.get_offsets()) == 3
        assert "top 1.0% flagged" in axis.get_title()
        assert "flagged (3 of 3 in view)" in axis.get_legend().get_texts()[0].get_text()

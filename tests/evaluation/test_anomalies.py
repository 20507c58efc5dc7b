"""Per-cell anomaly scores on tiny data with an injected outlier."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from omics_vae.evaluation.anomalies import score_anomalies
from omics_vae.evaluation.preparation import prepare_evaluation_cells

from .conftest import N_CELLS, OUTLIER, validated, with_outlier


class TestAnomalies:
    @pytest.mark.parametrize("method", ["isolation_forest", "knn"])
    @pytest.mark.parametrize("combine", ["rank", "zscore"])
    def test_an_injected_outlier_tops_the_ranking_and_is_flagged(
        self, embeddings, model_input, parameters, method, combine
    ):
        parameters["anomaly"].update(method=method, combine=combine)
        cells = prepare_evaluation_cells(
            with_outlier(embeddings), model_input, validated(parameters)
        )

        scores = score_anomalies(cells, validated(parameters).anomaly)

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
        scores = score_anomalies(evaluation_cells, validated(parameters).anomaly)

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
        cells = prepare_evaluation_cells(embeddings, model_input, validated(parameters))

        adjusted = score_anomalies(cells, validated(parameters).anomaly)
        parameters["anomaly"]["reconstruction"] = "raw"
        raw = score_anomalies(cells, validated(parameters).anomaly)

        np.testing.assert_allclose(adjusted["library_size"].sort_values(), np.sort(library_size))
        assert stats.spearmanr(raw["reconstruction_score"], raw["library_size"])[0] > 0.9
        depth_trend = stats.spearmanr(adjusted["reconstruction_score"], adjusted["library_size"])
        assert abs(depth_trend[0]) < 0.2
        top = adjusted.sort_values("reconstruction_score", ascending=False).iloc[0]
        assert top["cell"] == OUTLIER

    def test_without_reconstruction_error_the_latent_alone_decides(
        self, embeddings, model_input, parameters
    ):
        embeddings = with_outlier(embeddings)
        embeddings.obs = embeddings.obs.drop(columns="reconstruction_error")
        cells = prepare_evaluation_cells(embeddings, model_input, validated(parameters))

        scores = score_anomalies(cells, validated(parameters).anomaly)

        assert scores["reconstruction_error"].isna().all()
        assert scores.iloc[0]["cell"] == OUTLIER
        assert scores["combined_score"].is_monotonic_decreasing
        assert scores["latent_score"].is_monotonic_decreasing

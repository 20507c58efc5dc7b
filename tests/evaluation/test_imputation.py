"""Paired imputation: held-out predictions of the joint VAE and the baselines, their
scores and their MLflow metrics."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import r2_score

from omics_vae.data.paired import PairedInputError
from omics_vae.evaluation.imputation import (
    FEATURE_METRICS,
    METHODS,
    baseline_predictions,
    correlation,
    feature_scores,
    imputation_metrics,
    predict_held_out,
    score_imputations,
)
from omics_vae.params import InvalidParametersError
from omics_vae.schemas.paired_evaluation import BaselineParams, PairedEvaluationParams

from .paired_data import N_TEST, N_TRAIN, make_paired_inputs


@pytest.fixture
def paired_inputs():
    return make_paired_inputs()


class TestPredictHeldOut:
    def test_each_direction_holds_the_test_samples_and_every_method(self, paired_inputs):
        model_input, _, _ = paired_inputs

        predictions = predict_held_out(*paired_inputs, PairedEvaluationParams())

        assert predictions["space"] == "transformed"
        assert predictions["split"] == "test"
        names = [direction["name"] for direction in predictions["directions"]]
        assert names == ["rna_to_protein", "protein_to_rna"]
        to_protein = predictions["directions"][0]
        assert to_protein["features"] == ["protein0", "protein1", "protein2", "protein3"]
        assert to_protein["samples"] == list(model_input.obs_names[-N_TEST:])
        assert list(to_protein["predicted"]) == list(METHODS)
        for values in to_protein["predicted"].values():
            assert values.shape == (N_TEST, 4)
        np.testing.assert_array_equal(
            to_protein["measured"], model_input.layers["transformed"][-N_TEST:, 6:]
        )

    def test_a_perfect_imputation_scores_one_and_ridge_beats_the_controls(self, paired_inputs):
        predictions = predict_held_out(*paired_inputs, PairedEvaluationParams())

        _, _, summary = score_imputations(predictions)

        scores = summary.set_index(["direction", "method"])
        for direction in ("rna_to_protein", "protein_to_rna"):
            assert scores.loc[(direction, "joint_vae"), "pearson"] == pytest.approx(1.0)
            assert scores.loc[(direction, "joint_vae"), "rmse"] == pytest.approx(0.0)
            assert scores.loc[(direction, "ridge"), "pearson"] > 0.8
            assert scores.loc[(direction, "mean"), "pearson"] == pytest.approx(0.0, abs=1e-9)
            assert (
                scores.loc[(direction, "ridge"), "r2"] > scores.loc[(direction, "permuted"), "r2"]
            )

    def test_the_original_space_undoes_the_log(self, paired_inputs):
        model_input, imputed, _ = paired_inputs

        predictions = predict_held_out(*paired_inputs, {"space": "original"})

        to_protein = predictions["directions"][0]
        np.testing.assert_allclose(
            to_protein["measured"], np.expm1(model_input.layers["transformed"][-N_TEST:, 6:])
        )
        np.testing.assert_array_equal(to_protein["predicted"]["joint_vae"], imputed.X[-N_TEST:, 6:])
        # The baselines, fitted on scaled values, come back in the same units: the mean
        # baseline is the training mean after the log, with the log then undone.
        training_mean = model_input.layers["transformed"][:N_TRAIN, 6:].mean(axis=0)
        np.testing.assert_allclose(to_protein["predicted"]["mean"][0], np.expm1(training_mean))

    def test_a_plain_mapping_is_validated_naming_the_key(self, paired_inputs):
        with pytest.raises(InvalidParametersError, match=r"paired\.evaluation\.splt"):
            predict_held_out(*paired_inputs, {"splt": "test"})

    def test_imputations_of_other_samples_are_refused(self, paired_inputs):
        model_input, imputed, scalers = paired_inputs

        with pytest.raises(PairedInputError, match="does not belong to paired_model_input"):
            predict_held_out(model_input, imputed[::-1].copy(), scalers, PairedEvaluationParams())

    def test_an_empty_split_is_refused_naming_the_parameter(self, paired_inputs):
        model_input, imputed, scalers = paired_inputs
        model_input.obs["split"] = model_input.obs["split"].replace("val", "train")

        with pytest.raises(PairedInputError, match=r"paired\.evaluation\.split = 'val'"):
            predict_held_out(model_input, imputed, scalers, {"split": "val"})


class TestBaselinePredictions:
    def test_mean_knn_ridge_and_the_permuted_control(self):
        rng = np.random.default_rng(1)
        x_fit, x_eval = rng.normal(size=(30, 5)), rng.normal(size=(8, 5))
        y_fit = x_fit @ rng.normal(size=(5, 3))
        config = BaselineParams(pca_components=None, knn_neighbors=100)

        predicted = baseline_predictions(x_fit, y_fit, x_eval, config, permutation_seed=0)

        assert list(predicted) == ["ridge", "knn", "mean", "permuted"]
        np.testing.assert_allclose(predicted["mean"], np.tile(y_fit.mean(axis=0), (8, 1)))
        # k is capped at the fitted samples: every neighbour, the mean again.
        np.testing.assert_allclose(predicted["knn"], predicted["mean"])
        assert np.abs(predicted["ridge"] - x_eval @ np.linalg.lstsq(x_fit, y_fit)[0]).max() < 0.5
        assert not np.allclose(predicted["permuted"], predicted["ridge"])

    def test_the_source_is_reduced_to_its_principal_components(self):
        rng = np.random.default_rng(2)
        x_fit, x_eval = rng.normal(size=(30, 5)), rng.normal(size=(8, 5))
        y_fit = x_fit[:, :1].copy()

        reduced = baseline_predictions(
            x_fit, y_fit, x_eval, BaselineParams(pca_components=2), permutation_seed=0
        )
        full = baseline_predictions(
            x_fit, y_fit, x_eval, BaselineParams(pca_components=None), permutation_seed=0
        )

        assert not np.allclose(reduced["ridge"], full["ridge"])
        np.testing.assert_allclose(reduced["mean"], full["mean"])


class TestScores:
    def test_correlation_is_pearson_and_zero_without_signal(self):
        rng = np.random.default_rng(3)
        a, b = rng.normal(size=(20, 3)), rng.normal(size=(20, 3))
        b[:, 2] = 1.0

        r = correlation(a, b, axis=0)

        for column in (0, 1):
            assert r[column] == pytest.approx(np.corrcoef(a[:, column], b[:, column])[0, 1])
        assert r[2] == 0.0

    def test_feature_scores_match_scipy_and_scikit_learn(self):
        rng = np.random.default_rng(4)
        measured = rng.normal(size=(25, 3))
        predicted = measured + rng.normal(scale=0.5, size=(25, 3))

        scores = feature_scores(measured, predicted)

        assert list(scores) == list(FEATURE_METRICS)
        np.testing.assert_allclose(
            scores["r2"], r2_score(measured, predicted, multioutput="raw_values")
        )
        for column in range(3):
            spearman = stats.spearmanr(measured[:, column], predicted[:, column])[0]
            assert scores["spearman"][column] == pytest.approx(spearman)
        np.testing.assert_allclose(scores["mae"], np.abs(predicted - measured).mean(axis=0))

    def test_tables_and_metrics_of_every_direction_and_method(self, paired_inputs):
        predictions = predict_held_out(*paired_inputs, PairedEvaluationParams())

        features, samples, summary = score_imputations(predictions)
        metrics = imputation_metrics(summary)

        assert len(features) == len(METHODS) * (4 + 6)
        assert len(samples) == len(METHODS) * 2 * N_TEST
        assert list(summary.columns) == [
            "direction", "method", *FEATURE_METRICS, "sample_pearson", "n_samples", "n_features"
        ]  # fmt: skip
        assert len(metrics) == 2 * len(METHODS) * (len(FEATURE_METRICS) + 1)
        key = "paired/rna_to_protein/joint_vae/pearson"
        assert metrics[key] == {"value": pytest.approx(1.0), "step": 0}
        assert all(isinstance(item["value"], float) for item in metrics.values())

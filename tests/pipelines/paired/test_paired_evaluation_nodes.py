"""paired_evaluation nodes: each hands the validated ``paired.evaluation`` block to
the library (whose behaviour is tested in tests/evaluation)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from omics_vae.evaluation import imputation, imputation_figures
from omics_vae.pipelines.paired_evaluation import nodes
from tests.conftest import validated_block
from tests.evaluation.paired_data import make_paired_inputs


@pytest.fixture
def predictions():
    return nodes.predict_held_out(
        *make_paired_inputs(), validated_block("paired.evaluation", {"split": "val"})
    )


def test_predict_held_out_reads_the_block(predictions):
    assert predictions["split"] == "val"


def test_the_scatter_draws_n_scatter_features_best_and_worst(predictions):
    features, _, _ = nodes.score_imputations(predictions)

    figure = nodes.plot_best_worst_features(
        predictions, features, validated_block("paired.evaluation", {"n_scatter_features": 1})
    )

    assert len(figure.get_axes()) == 2 * 2
    plt.close(figure)


def test_nodes_without_parameters_are_the_library_functions():
    assert nodes.score_imputations is imputation.score_imputations
    assert nodes.imputation_metrics is imputation.imputation_metrics
    assert nodes.plot_imputation_summary is imputation_figures.plot_imputation_summary
    assert nodes.plot_feature_histograms is imputation_figures.plot_feature_histograms

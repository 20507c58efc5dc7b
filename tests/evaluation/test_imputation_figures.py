"""Figures of the paired imputation."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from omics_vae.evaluation.imputation import METHODS, predict_held_out, score_imputations
from omics_vae.evaluation.imputation_figures import (
    plot_best_worst_features,
    plot_feature_histograms,
    plot_imputation_summary,
)
from omics_vae.schemas.paired_evaluation import PairedEvaluationParams

from .paired_data import make_paired_inputs

DIRECTIONS = ["rna_to_protein", "protein_to_rna"]


@pytest.fixture
def scored():
    predictions = predict_held_out(*make_paired_inputs(), PairedEvaluationParams())
    features, _, summary = score_imputations(predictions)
    yield predictions, features, summary
    plt.close("all")


def test_summary_has_a_panel_per_direction_and_a_bar_per_method(scored):
    _, _, summary = scored

    axes = plot_imputation_summary(summary).get_axes()

    assert [axis.get_title() for axis in axes] == DIRECTIONS
    assert [label.get_text() for label in axes[0].get_yticklabels()] == list(METHODS)


def test_histograms_leave_out_the_constant_mean(scored):
    _, features, _ = scored

    axes = plot_feature_histograms(features).get_axes()

    legend = [text.get_text() for text in axes[0].get_legend().get_texts()]
    assert legend == [method for method in METHODS if method != "mean"]


def test_best_and_worst_features_fill_a_row_per_direction(scored):
    predictions, features, _ = scored

    figure = plot_best_worst_features(predictions, features, n_features=2)

    axes = figure.get_axes()
    assert len(axes) == 2 * 4
    assert axes[0].get_title().startswith("protein")  # rna_to_protein's best first
    assert axes[4].get_title().startswith("rna")
    assert "test split" in figure._suptitle.get_text()

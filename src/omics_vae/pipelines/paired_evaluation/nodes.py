"""Nodes of the paired_evaluation pipeline: how well each platform is imputed from the
other on held-out samples, for the joint VAE and for baselines fitted in the same run.

The computation lives in the Kedro-free ``omics_vae.evaluation.imputation`` and
``imputation_figures``; a node validates the ``paired.evaluation`` parameter block and
calls it. Nodes that pass their inputs through unchanged are the library functions
themselves.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from omics_vae.evaluation import imputation_figures
from omics_vae.evaluation.imputation import (
    imputation_metrics,
    predict_held_out,
    score_imputations,
)
from omics_vae.evaluation.imputation_figures import (
    plot_feature_histograms,
    plot_imputation_summary,
)
from omics_vae.schemas.paired_evaluation import PairedEvaluationParams

__all__ = [
    "imputation_metrics",
    "plot_best_worst_features",
    "plot_feature_histograms",
    "plot_imputation_summary",
    "predict_held_out",
    "score_imputations",
]


def plot_best_worst_features(
    paired_predictions: dict[str, Any],
    feature_scores_table: pd.DataFrame,
    params: PairedEvaluationParams,
) -> Figure:
    """Joint VAE imputation vs measured values for its best and worst features.

    Args:
        paired_predictions: Output of :func:`predict_held_out`.
        feature_scores_table: The per-feature scores of :func:`score_imputations`.
        params: The ``paired.evaluation`` parameter block (``n_scatter_features``).

    Returns:
        See :func:`omics_vae.evaluation.imputation_figures.plot_best_worst_features`.
    """
    return imputation_figures.plot_best_worst_features(
        paired_predictions, feature_scores_table, params.n_scatter_features
    )

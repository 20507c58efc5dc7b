"""Nodes of the paired_evaluation pipeline: how well each platform is imputed from the
other on held-out samples, for the joint VAE and for baselines fitted in the same run.

The computation lives in the Kedro-free ``omics_vae.evaluation.imputation`` and
``imputation_figures``; a node validates the ``paired.evaluation`` parameter block and
calls it. Nodes without parameters are the library functions themselves.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from anndata import AnnData
from matplotlib.figure import Figure

from omics_vae.evaluation import imputation, imputation_figures
from omics_vae.evaluation.imputation import imputation_metrics, score_imputations
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


def predict_held_out(
    paired_model_input: AnnData,
    paired_imputed: AnnData,
    paired_scalers: dict[str, Any],
    params: PairedEvaluationParams,
) -> dict[str, Any]:
    """Measured and predicted values of each platform on the evaluation split.

    Args:
        paired_model_input: The processed, scaled samples of both platforms.
        paired_imputed: The joint VAE's imputations of the same samples and features.
        paired_scalers: The scaler record of ``paired_processing``.
        params: The ``paired.evaluation`` parameter block.

    Returns:
        See :func:`omics_vae.evaluation.imputation.predict_held_out`.
    """
    return imputation.predict_held_out(paired_model_input, paired_imputed, paired_scalers, params)


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

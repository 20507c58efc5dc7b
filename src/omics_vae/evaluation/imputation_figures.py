"""Figures of the paired imputation: mean scores per method, the distribution of
per-feature correlations, and the joint VAE's best and worst features."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from omics_vae.evaluation.imputation import MODEL_METHOD


def plot_imputation_summary(summary: pd.DataFrame) -> Figure:
    """Mean per-feature and per-sample Pearson r of every method, per direction.

    Args:
        summary: The summary of :func:`omics_vae.evaluation.imputation.score_imputations`.

    Returns:
        The figure, one panel per direction.
    """
    directions = list(dict.fromkeys(summary["direction"]))
    figure, axes = plt.subplots(1, len(directions), figsize=(5.5 * len(directions), 3.6))
    for axis, direction in zip(np.atleast_1d(axes), directions, strict=True):
        rows = summary[summary["direction"] == direction]
        positions = np.arange(len(rows))
        axis.barh(positions + 0.2, rows["pearson"], 0.4, label="per feature")
        axis.barh(positions - 0.2, rows["sample_pearson"], 0.4, label="per sample")
        for y, (feature_r, sample_r) in enumerate(
            zip(rows["pearson"], rows["sample_pearson"], strict=True)
        ):
            axis.text(
                max(feature_r, 0) + 0.01, y + 0.2, f"{feature_r:.2f}", va="center", fontsize=8
            )
            axis.text(max(sample_r, 0) + 0.01, y - 0.2, f"{sample_r:.2f}", va="center", fontsize=8)
        axis.set_yticks(positions, rows["method"])
        axis.invert_yaxis()
        axis.set_xlim(min(0.0, rows[["pearson", "sample_pearson"]].min().min()), 1.1)
        axis.set_xlabel("mean Pearson r (held-out samples)")
        axis.set_title(direction)
    np.atleast_1d(axes)[0].legend(frameon=False, loc="lower right")
    figure.tight_layout()
    return figure


def plot_feature_histograms(feature_scores_table: pd.DataFrame) -> Figure:
    """Distribution of per-feature Pearson r of every method, per direction.

    Args:
        feature_scores_table: The per-feature scores of
            :func:`omics_vae.evaluation.imputation.score_imputations`.

    Returns:
        The figure, one panel per direction.
    """
    directions = list(dict.fromkeys(feature_scores_table["direction"]))
    figure, axes = plt.subplots(1, len(directions), figsize=(5.5 * len(directions), 3.4))
    bins = np.linspace(-1, 1, 41)
    for axis, direction in zip(np.atleast_1d(axes), directions, strict=True):
        rows = feature_scores_table[feature_scores_table["direction"] == direction]
        for method, values in rows.groupby("method", sort=False)["pearson"]:
            if method != "mean":  # constant predictions: r is 0 by definition
                axis.hist(values, bins=bins, histtype="step", label=method, linewidth=1.4)
        axis.set_xlabel("per-feature Pearson r")
        axis.set_ylabel("features")
        axis.set_title(direction)
        axis.legend(frameon=False, fontsize=8)
    figure.tight_layout()
    return figure


def plot_best_worst_features(
    paired_predictions: dict[str, Any], feature_scores_table: pd.DataFrame, n_features: int
) -> Figure:
    """Joint VAE imputation vs measured values for its best and worst features.

    Args:
        paired_predictions: Output of :func:`omics_vae.evaluation.imputation.predict_held_out`.
        feature_scores_table: The per-feature scores of
            :func:`omics_vae.evaluation.imputation.score_imputations`.
        n_features: Best and worst features drawn per direction (each).

    Returns:
        The figure: a row per direction, the best features first.
    """
    directions = paired_predictions["directions"]
    figure, axes = plt.subplots(
        len(directions),
        2 * n_features,
        figsize=(2.6 * 2 * n_features, 2.6 * len(directions)),
        squeeze=False,
    )
    for row, direction in zip(axes, directions, strict=True):
        scores = feature_scores_table[
            (feature_scores_table["direction"] == direction["name"])
            & (feature_scores_table["method"] == MODEL_METHOD)
        ].reset_index(drop=True)
        order = np.argsort(-scores["pearson"].to_numpy(), kind="stable")
        chosen = [*order[:n_features], *order[::-1][:n_features]][: len(row)]
        for axis, index in zip(row, chosen, strict=False):
            measured = direction["measured"][:, index]
            predicted = direction["predicted"][MODEL_METHOD][:, index]
            axis.scatter(measured, predicted, s=6, alpha=0.6)
            axis.set_title(
                f"{direction['features'][index]}  r={scores['pearson'][index]:.2f}", fontsize=8
            )
            axis.set_xlabel("measured", fontsize=7)
            axis.set_ylabel("imputed", fontsize=7)
            axis.tick_params(labelsize=6)
        row[0].annotate(
            direction["name"], (0, 1.25), xycoords="axes fraction", fontsize=9, weight="bold"
        )
    figure.suptitle(f"Best and worst features ({paired_predictions['split']} split)", fontsize=10)
    figure.tight_layout()
    return figure

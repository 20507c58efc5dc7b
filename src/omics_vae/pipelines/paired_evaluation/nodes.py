"""Nodes of the paired_evaluation pipeline: how well each platform is imputed from the
other on held-out samples, for the joint VAE and for baselines fitted in the same run."""

from __future__ import annotations

import logging
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.figure import Figure
from scipy.stats import rankdata

from omics_vae.data import paired
from omics_vae.data.paired import TRANSFORMED_LAYER, PairedInputError
from omics_vae.params import validate_section
from omics_vae.schemas.paired_evaluation import BaselineParams, PairedEvaluationParams

logger = logging.getLogger(__name__)

MODEL_METHOD = "joint_vae"
METHODS = (MODEL_METHOD, "ridge", "knn", "mean", "permuted")
FEATURE_METRICS = ("pearson", "spearman", "r2", "rmse", "mae")


def _config(params: dict[str, Any]) -> PairedEvaluationParams:
    return validate_section("paired.evaluation", PairedEvaluationParams, params)


def predict_held_out(
    paired_model_input: AnnData,
    paired_imputed: AnnData,
    paired_scalers: dict[str, Any],
    params: dict[str, Any],
) -> dict[str, Any]:
    """Measured and predicted values of each platform on the evaluation split.

    The joint VAE's predictions come from ``paired_imputed``; the baselines are fitted
    here on the training samples (``baselines.fit_on``), on the scaled source platform
    reduced to ``baselines.pca_components`` principal components: the training mean,
    k-nearest-neighbour regression, ridge regression, and ridge fitted on shuffled
    sample pairs (the permuted control, which must score near zero).

    Returns:
        ``{"space": ..., "split": ..., "directions": [...]}``, one direction per target
        platform with its ``name`` (``<source>_to_<target>``), ``features``,
        ``samples``, ``measured`` and ``predicted`` (``{method: array}``).
    """
    config = _config(params)
    paired.check_paired_anndata(paired_model_input, "paired_model_input")
    if list(paired_imputed.obs_names) != list(paired_model_input.obs_names) or list(
        paired_imputed.var_names
    ) != list(paired_model_input.var_names):
        raise PairedInputError(
            "paired_imputed does not belong to paired_model_input (other samples or "
            "features). Run paired_embedding on the same processed data, or load matching "
            "versions with --load-versions."
        )
    split = paired_model_input.obs["split"].astype(str).to_numpy()
    evaluated = split == config.split
    fitted = np.isin(split, ["train"] if config.baselines.fit_on == "train" else ["train", "val"])
    if not evaluated.any():
        raise PairedInputError(
            f"paired.evaluation.split = {config.split!r} has no samples; give it a fraction "
            "in paired.processing.split or evaluate another split."
        )
    scalers = paired.scalers_from_record(paired_scalers, "paired_scalers")
    names = paired.platform_names(paired_model_input)
    directions = []
    for source, target in (("a", "b"), ("b", "a")):
        record = paired_scalers["platforms"][target]
        x = np.asarray(paired.platform_view(paired_model_input, source).X, dtype=np.float64)
        target_view = paired.platform_view(paired_model_input, target)
        y = np.asarray(target_view.X, dtype=np.float64)

        def to_space(scaled: np.ndarray, record=record, target=target) -> np.ndarray:
            values = scalers[target].inverse_transform(scaled)
            if config.space == "original":
                values = paired.inverse_log_transform(values, record["log"], record["log_offset"])
            return values

        measured = np.asarray(target_view.layers[TRANSFORMED_LAYER], dtype=np.float64)
        if config.space == "original":
            measured = paired.inverse_log_transform(measured, record["log"], record["log_offset"])
        model_view = paired.platform_view(paired_imputed, target)
        model_values = (
            model_view.X if config.space == "original" else model_view.layers[TRANSFORMED_LAYER]
        )
        predicted = {MODEL_METHOD: np.asarray(model_values, dtype=np.float64)[evaluated]}
        baselines = baseline_predictions(
            x[fitted], y[fitted], x[evaluated], config.baselines, config.permutation_seed
        )
        predicted |= {name: to_space(values) for name, values in baselines.items()}
        directions.append(
            {
                "name": f"{names[source]}_to_{names[target]}",
                "features": list(target_view.var["feature"]),
                "samples": list(paired_model_input.obs_names[evaluated]),
                "measured": measured[evaluated],
                "predicted": predicted,
            }
        )
    return {"space": config.space, "split": config.split, "directions": directions}


def baseline_predictions(
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    x_eval: np.ndarray,
    config: BaselineParams,
    permutation_seed: int,
) -> dict[str, np.ndarray]:
    """Mean, k-NN, ridge and permuted-ridge predictions of ``y`` for ``x_eval``."""
    from sklearn.decomposition import PCA  # noqa: PLC0415 (import cost)
    from sklearn.linear_model import Ridge  # noqa: PLC0415
    from sklearn.neighbors import KNeighborsRegressor  # noqa: PLC0415

    n_components = config.pca_components
    if n_components is not None and n_components < min(x_fit.shape):
        pca = PCA(n_components=n_components, random_state=0).fit(x_fit)
        x_fit, x_eval = pca.transform(x_fit), pca.transform(x_eval)
    k = min(config.knn_neighbors, len(x_fit))
    shuffled = np.random.default_rng(permutation_seed).permutation(len(y_fit))
    return {
        "ridge": Ridge(alpha=config.ridge_alpha).fit(x_fit, y_fit).predict(x_eval),
        "knn": KNeighborsRegressor(n_neighbors=k).fit(x_fit, y_fit).predict(x_eval),
        "mean": np.broadcast_to(y_fit.mean(axis=0), (len(x_eval), y_fit.shape[1])).copy(),
        "permuted": Ridge(alpha=config.ridge_alpha).fit(x_fit, y_fit[shuffled]).predict(x_eval),
    }


def correlation(a: np.ndarray, b: np.ndarray, axis: int) -> np.ndarray:
    """Pearson correlation along ``axis``; 0 where either side is constant (no signal)."""
    a = a - a.mean(axis=axis, keepdims=True)
    b = b - b.mean(axis=axis, keepdims=True)
    denominator = np.sqrt((a * a).sum(axis=axis) * (b * b).sum(axis=axis))
    numerator = (a * b).sum(axis=axis)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def feature_scores(measured: np.ndarray, predicted: np.ndarray) -> dict[str, np.ndarray]:
    """Per-feature Pearson, Spearman, R², RMSE and MAE of predicted vs measured."""
    residual = predicted - measured
    total = ((measured - measured.mean(axis=0)) ** 2).sum(axis=0)
    r2 = 1 - (residual**2).sum(axis=0) / np.where(total > 0, total, np.nan)
    return {
        "pearson": correlation(measured, predicted, axis=0),
        "spearman": correlation(rankdata(measured, axis=0), rankdata(predicted, axis=0), axis=0),
        "r2": r2,
        "rmse": np.sqrt((residual**2).mean(axis=0)),
        "mae": np.abs(residual).mean(axis=0),
    }


def score_imputations(
    paired_predictions: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per-feature scores, per-sample correlations and their means per method.

    Returns:
        ``(feature_scores, sample_scores, summary)``; the summary has one row per
        direction and method: the mean of each per-feature metric and the mean
        per-sample Pearson correlation.
    """
    feature_rows, sample_rows, summary_rows = [], [], []
    for direction in paired_predictions["directions"]:
        measured = direction["measured"]
        for method, predicted in direction["predicted"].items():
            scores = feature_scores(measured, predicted)
            per_sample = correlation(measured, predicted, axis=1)
            feature_rows.append(
                pd.DataFrame(
                    {"direction": direction["name"], "method": method,
                     "feature": direction["features"], **scores}
                )
            )  # fmt: skip
            sample_rows.append(
                pd.DataFrame(
                    {"direction": direction["name"], "method": method,
                     "sample_id": direction["samples"], "pearson": per_sample}
                )
            )  # fmt: skip
            summary_rows.append(
                {
                    "direction": direction["name"],
                    "method": method,
                    **{metric: float(np.nanmean(scores[metric])) for metric in FEATURE_METRICS},
                    "sample_pearson": float(np.mean(per_sample)),
                    "n_samples": len(direction["samples"]),
                    "n_features": len(direction["features"]),
                }
            )
    summary = pd.DataFrame(summary_rows)
    for direction, rows in summary.groupby("direction", sort=False):
        logger.info(
            "%s mean per-feature Pearson r: %s",
            direction,
            ", ".join(f"{m} {v:.3f}" for m, v in zip(rows["method"], rows["pearson"], strict=True)),
        )
    return pd.concat(feature_rows), pd.concat(sample_rows), summary


def imputation_metrics(summary: pd.DataFrame) -> dict[str, dict[str, float]]:
    """The summary as MLflow metrics: ``paired/<direction>/<method>/<metric>``."""
    metrics = {}
    for row in summary.to_dict(orient="records"):
        for metric in (*FEATURE_METRICS, "sample_pearson"):
            key = f"paired/{row['direction']}/{row['method']}/{metric}"
            metrics[key] = {"value": float(row[metric]), "step": 0}
    return metrics


def plot_imputation_summary(summary: pd.DataFrame) -> Figure:
    """Mean per-feature and per-sample Pearson r of every method, per direction."""
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
    """Distribution of per-feature Pearson r of every method, per direction."""
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
    paired_predictions: dict[str, Any],
    feature_scores_table: pd.DataFrame,
    params: dict[str, Any],
) -> Figure:
    """Joint VAE imputation vs measured values for its best and worst features."""
    n = _config(params).n_scatter_features
    directions = paired_predictions["directions"]
    figure, axes = plt.subplots(
        len(directions), 2 * n, figsize=(2.6 * 2 * n, 2.6 * len(directions)), squeeze=False
    )
    for row, direction in zip(axes, directions, strict=True):
        scores = feature_scores_table[
            (feature_scores_table["direction"] == direction["name"])
            & (feature_scores_table["method"] == MODEL_METHOD)
        ].reset_index(drop=True)
        order = np.argsort(-scores["pearson"].to_numpy(), kind="stable")
        chosen = [*order[:n], *order[::-1][:n]][: len(row)]
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

"""How well each platform is imputed from the other on held-out samples: the joint VAE's
imputations beside baselines fitted on the training samples, scored per feature and per
sample, and the scores as MLflow metrics."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy.stats import rankdata

from omics_vae.data import paired
from omics_vae.data.paired import TRANSFORMED_LAYER, PairedInputError
from omics_vae.params import validate_section
from omics_vae.schemas.paired_evaluation import BaselineParams, PairedEvaluationParams

logger = logging.getLogger(__name__)

MODEL_METHOD = "joint_vae"
METHODS = (MODEL_METHOD, "ridge", "knn", "mean", "permuted")
FEATURE_METRICS = ("pearson", "spearman", "r2", "rmse", "mae")


def predict_held_out(
    paired_model_input: AnnData,
    paired_imputed: AnnData,
    paired_scalers: dict[str, Any],
    params: PairedEvaluationParams | Mapping[str, Any],
) -> dict[str, Any]:
    """Measured and predicted values of each platform on the evaluation split.

    The joint VAE's predictions come from ``paired_imputed``; the baselines are fitted
    here on the training samples (``baselines.fit_on``), on the scaled source platform
    reduced to ``baselines.pca_components`` principal components: the training mean,
    k-nearest-neighbour regression, ridge regression, and ridge fitted on shuffled
    sample pairs (the permuted control, which must score near zero).

    Args:
        paired_model_input: The processed, scaled samples of both platforms.
        paired_imputed: The joint VAE's imputations of the same samples and features.
        paired_scalers: The scaler record of ``paired_processing``.
        params: The ``paired.evaluation`` parameters, validated or as a plain mapping
            (``runs.paired_predictions`` passes the catalog's block).

    Returns:
        ``{"space": ..., "split": ..., "directions": [...]}``, one direction per target
        platform with its ``name`` (``<source>_to_<target>``), ``features``,
        ``samples``, ``measured`` and ``predicted`` (``{method: array}``).

    Raises:
        PairedInputError: ``paired_imputed`` belongs to other samples or features, or the
            evaluated split is empty.
    """
    config = validate_section("paired.evaluation", PairedEvaluationParams, params)
    paired.check_paired_anndata(paired_model_input, "paired_model_input")
    _check_imputed_matches(paired_model_input, paired_imputed)
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
        measured = np.asarray(target_view.layers[TRANSFORMED_LAYER], dtype=np.float64)
        baselines = baseline_predictions(
            x[fitted], y[fitted], x[evaluated], config.baselines, config.permutation_seed
        )
        predicted = {
            MODEL_METHOD: _model_predictions(paired_imputed, target, config.space)[evaluated],
            **{
                name: _in_space(scalers[target].inverse_transform(values), record, config.space)
                for name, values in baselines.items()
            },
        }
        directions.append(
            {
                "name": f"{names[source]}_to_{names[target]}",
                "features": list(target_view.var["feature"]),
                "samples": list(paired_model_input.obs_names[evaluated]),
                "measured": _in_space(measured, record, config.space)[evaluated],
                "predicted": predicted,
            }
        )
    return {"space": config.space, "split": config.split, "directions": directions}


def _in_space(transformed: np.ndarray, record: dict[str, Any], space: str) -> np.ndarray:
    """Values after the log transform in ``space``: as they are, or with the log undone."""
    if space == "original":
        return paired.inverse_log_transform(transformed, record["log"], record["log_offset"])
    return transformed


def _model_predictions(paired_imputed: AnnData, target: str, space: str) -> np.ndarray:
    """The joint VAE's imputations of ``target`` in ``space``, for every sample."""
    view = paired.platform_view(paired_imputed, target)
    values = view.X if space == "original" else view.layers[TRANSFORMED_LAYER]
    return np.asarray(values, dtype=np.float64)


def _check_imputed_matches(paired_model_input: AnnData, paired_imputed: AnnData) -> None:
    if list(paired_imputed.obs_names) != list(paired_model_input.obs_names) or list(
        paired_imputed.var_names
    ) != list(paired_model_input.var_names):
        raise PairedInputError(
            "paired_imputed does not belong to paired_model_input (other samples or "
            "features). Run paired_embedding on the same processed data, or load matching "
            "versions with --load-versions."
        )


def baseline_predictions(
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    x_eval: np.ndarray,
    config: BaselineParams,
    permutation_seed: int,
) -> dict[str, np.ndarray]:
    """Mean, k-NN, ridge and permuted-ridge predictions of ``y`` for ``x_eval``.

    Args:
        x_fit: Source platform of the samples the baselines are fitted on.
        y_fit: Target platform of the same samples.
        x_eval: Source platform of the evaluated samples.
        config: The ``paired.evaluation.baselines`` parameters.
        permutation_seed: Seed of the shuffle of the permuted control.

    Returns:
        ``{method: evaluated samples x target features}`` for ``ridge``, ``knn``,
        ``mean`` and ``permuted``, in the scaled space of ``y_fit``.
    """
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

    Args:
        paired_predictions: Output of :func:`predict_held_out`.

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
    _log_mean_pearson(summary)
    return pd.concat(feature_rows), pd.concat(sample_rows), summary


def _log_mean_pearson(summary: pd.DataFrame) -> None:
    for direction, rows in summary.groupby("direction", sort=False):
        logger.info(
            "%s mean per-feature Pearson r: %s",
            direction,
            ", ".join(f"{m} {v:.3f}" for m, v in zip(rows["method"], rows["pearson"], strict=True)),
        )


def imputation_metrics(summary: pd.DataFrame) -> dict[str, dict[str, float]]:
    """The summary as MLflow metrics: ``paired/<direction>/<method>/<metric>``.

    Args:
        summary: The summary of :func:`score_imputations`.

    Returns:
        ``{key: {"value": v, "step": 0}}`` for every row and metric.
    """
    metrics = {}
    for row in summary.to_dict(orient="records"):
        for metric in (*FEATURE_METRICS, "sample_pearson"):
            key = f"paired/{row['direction']}/{row['method']}/{metric}"
            metrics[key] = {"value": float(row[metric]), "step": 0}
    return metrics

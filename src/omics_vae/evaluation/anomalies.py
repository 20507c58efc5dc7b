"""Per-cell anomaly scores: outlyingness in the corrected latent and the reconstruction
error beyond what sequencing depth explains, combined and ranked."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import stats
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import NearestNeighbors
from statsmodels.nonparametric.smoothers_lowess import lowess

from omics_vae.evaluation.cells import (
    BATCH,
    CELL_TYPE,
    LIBRARY_SIZE,
    RECONSTRUCTION_ERROR,
    RECORD_KEY,
    cell_labels,
)
from omics_vae.processing.annotations import COUNTS_LAYER
from omics_vae.schemas.evaluation import AnomalyParams

logger = logging.getLogger(__name__)


def score_anomalies(evaluation_cells: AnnData, config: AnomalyParams) -> pd.DataFrame:
    """Per-cell anomaly score from the corrected latent and the reconstruction error.

    The latent score is an IsolationForest's (its negated ``score_samples``) or the mean
    distance to the ``n_neighbors`` nearest cells (``knn``); higher is more anomalous.
    The reconstruction error (``obs["reconstruction_error"]``, the per-cell negative
    log-likelihood, when the embedding has it) grows with a cell's counts, so by
    default (``reconstruction: depth_adjusted``) what enters is its excess over cells of
    the same depth (:func:`depth_adjusted`). The two are combined by averaging their
    percentile ranks (``rank``: robust to their different scales and heavy tails) or
    their z-scores (``zscore``: keeps how extreme a cell is). The top ``fraction`` of
    cells are flagged.

    Args:
        evaluation_cells: Output of
            :func:`omics_vae.evaluation.preparation.prepare_evaluation_cells`.
        config: The ``evaluation.anomaly`` parameters.

    Returns:
        One row per evaluated cell, most anomalous first: ``rank``, ``cell``, ``batch``,
        ``cell_type``, ``split``, ``library_size``, ``latent_score``,
        ``reconstruction_error`` (raw), ``reconstruction_score`` (what was combined),
        ``combined_score``, ``flagged``.
    """
    info = evaluation_cells.uns[RECORD_KEY]
    obs = evaluation_cells.obs
    latent_score = latent_outlier_score(
        np.asarray(evaluation_cells.obsm[info["latent_key"]]), config
    )
    library_size = _column(obs, LIBRARY_SIZE)
    reconstruction = _column(obs, RECONSTRUCTION_ERROR)
    reconstruction_score = reconstruction_for_scoring(reconstruction, library_size, config)
    combined = combine_scores([latent_score, reconstruction_score], config.combine)
    n_flagged = math.ceil(config.fraction * len(obs))
    order = np.argsort(-combined, kind="stable")
    labels = cell_labels(obs, info)
    table = pd.DataFrame(
        {
            "rank": np.arange(1, len(obs) + 1),
            "cell": obs.index.to_numpy()[order],
            BATCH: labels[BATCH][order],
            CELL_TYPE: None if labels[CELL_TYPE] is None else labels[CELL_TYPE][order],
            "split": obs["split"].astype(str).to_numpy()[order] if "split" in obs else None,
            LIBRARY_SIZE: library_size[order],
            "latent_score": latent_score[order],
            RECONSTRUCTION_ERROR: reconstruction[order],
            "reconstruction_score": reconstruction_score[order],
            "combined_score": combined[order],
            "flagged": np.arange(len(obs)) < n_flagged,
        }
    )
    logger.info(
        "Flagged %d of %d cells as anomalous (%s, %s)",
        n_flagged,
        len(obs),
        config.method,
        config.combine,
    )
    return table


def _column(obs: pd.DataFrame, key: str) -> np.ndarray:
    """An obs column as floats, all missing where obs lacks it."""
    if key not in obs:
        return np.full(len(obs), np.nan)
    return obs[key].to_numpy(dtype=float)


def reconstruction_for_scoring(
    reconstruction: np.ndarray, library_size: np.ndarray, config: AnomalyParams
) -> np.ndarray:
    """The reconstruction error as it enters the anomaly score (see ``reconstruction``)."""
    if not np.isfinite(reconstruction).any():
        logger.info("No obs['%s']: anomalies from the latent alone", RECONSTRUCTION_ERROR)
        return reconstruction
    if config.reconstruction == "raw":
        return reconstruction
    if not np.isfinite(library_size).any():
        logger.warning(
            "model_input has no layers['%s']: the reconstruction error enters the anomaly "
            "score unadjusted for sequencing depth",
            COUNTS_LAYER,
        )
        return reconstruction
    return depth_adjusted(reconstruction, library_size)


def depth_adjusted(reconstruction: np.ndarray, library_size: np.ndarray) -> np.ndarray:
    """log reconstruction error minus its LOWESS trend over log library size.

    A cell's negative log-likelihood is a sum over its counts, so deep cells have large
    errors however well they are modelled (Spearman ~0.95 on the simulated default
    data); the residual is the error beyond what the cell's depth explains.
    """
    log_error = np.log1p(reconstruction)
    log_depth = np.log1p(library_size)
    # delta: fit the trend at points spaced 1% of the range apart and interpolate in
    # between, which keeps LOWESS linear in the number of cells.
    trend = lowess(
        log_error, log_depth, frac=0.3, delta=0.01 * np.ptp(log_depth), return_sorted=False
    )
    return log_error - trend


def latent_outlier_score(latent: np.ndarray, config: AnomalyParams) -> np.ndarray:
    """Outlyingness of each cell in the latent space; higher is more anomalous."""
    if config.method == "isolation_forest":
        forest = IsolationForest(random_state=config.seed).fit(latent)
        return -forest.score_samples(latent)
    n_neighbors = min(config.n_neighbors + 1, len(latent))
    distances, _ = NearestNeighbors(n_neighbors=n_neighbors).fit(latent).kneighbors(latent)
    # The first neighbour is the cell itself.
    return distances[:, 1:].mean(axis=1)


def combine_scores(scores: list[np.ndarray], method: str) -> np.ndarray:
    """Mean of the scores' percentile ranks or z-scores; missing scores are left out."""
    if method == "rank":
        scaled = [
            stats.rankdata(s, nan_policy="omit") / np.isfinite(s).sum()
            for s in scores
            if np.isfinite(s).any()
        ]
    else:
        scaled = [stats.zscore(s, nan_policy="omit") for s in scores if np.isfinite(s).any()]
    return np.nanmean(np.vstack(scaled), axis=0)

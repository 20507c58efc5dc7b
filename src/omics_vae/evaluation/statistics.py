"""How strongly each latent dimension depends on batch and on cell type: η², the
Kruskal-Wallis test and Benjamini-Hochberg q-values."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import stats
from statsmodels.stats.multitest import multipletests

from omics_vae.evaluation.cells import BATCH, CELL_TYPE, RECORD_KEY, EvaluationInputError

logger = logging.getLogger(__name__)


def compute_latent_association(evaluation_cells: AnnData) -> pd.DataFrame:
    """How strongly each latent dimension depends on batch and on cell type.

    For every dimension of the corrected latent (``z_i``, or ``z`` for a model without
    a technical latent) and of the technical latent (``z_s``): the effect size η² of a
    one-way ANOVA (between-group over total sum of squares, the share of the
    dimension's variance the covariate explains) and the Kruskal-Wallis H test, whose
    p-values are corrected for multiple testing (Benjamini-Hochberg) over the whole
    table.

    Args:
        evaluation_cells: Output of
            :func:`omics_vae.evaluation.preparation.prepare_evaluation_cells`.

    Returns:
        One row per latent x dimension x covariate: ``latent``, ``dimension``,
        ``covariate`` (batch / cell_type), ``obs_key``, ``n_groups``, ``eta_squared``,
        ``kruskal_h``, ``p_value``, ``q_value``.

    Raises:
        EvaluationInputError: Every covariate has fewer than two groups.
    """
    info = evaluation_cells.uns[RECORD_KEY]
    covariates = {BATCH: info["batch_key"], CELL_TYPE: info["cell_type_key"]}
    frames = []
    for latent, key in latent_names(info).items():
        values = np.asarray(evaluation_cells.obsm[key], dtype=np.float64)
        for covariate, obs_key in covariates.items():
            if obs_key is None:
                continue
            frame = _association(values, evaluation_cells.obs[obs_key])
            if frame is not None:
                frame.insert(0, "latent", latent)
                frame.insert(2, "covariate", covariate)
                frame.insert(3, "obs_key", obs_key)
                frames.append(frame)
    if not frames:
        raise EvaluationInputError(
            "No latent association to compute: every covariate has fewer than two groups."
        )
    table = pd.concat(frames, ignore_index=True)
    table["q_value"] = benjamini_hochberg(table["p_value"].to_numpy())
    return table


def _association(values: np.ndarray, groups: pd.Series) -> pd.DataFrame | None:
    """η² and Kruskal-Wallis of every column of ``values`` against ``groups`` (cells of
    unknown group left out); None, with a warning, when there are fewer than two groups."""
    known = groups.notna().to_numpy()
    n_groups = groups[known].nunique()
    if n_groups < 2:
        logger.warning(
            "Latent association with %s skipped: the evaluated cells have %d group(s)",
            groups.name,
            n_groups,
        )
        return None
    codes = pd.factorize(groups[known])[0]
    h, p = kruskal_wallis(values[known], codes)
    return pd.DataFrame(
        {
            "dimension": np.arange(values.shape[1]),
            "n_groups": n_groups,
            "eta_squared": eta_squared(values[known], codes),
            "kruskal_h": h,
            "p_value": p,
        }
    )


def latent_names(info: dict[str, Any]) -> dict[str, str]:
    """Short name -> obsm key of each latent: z_i and z_s for inVAE, z otherwise."""
    if info["technical_key"]:
        return {"z_i": info["latent_key"], "z_s": info["technical_key"]}
    return {"z": info["latent_key"]}


def eta_squared(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """η² per column: between-group over total sum of squares (one-way ANOVA)."""
    frame = pd.DataFrame(values)
    centred = frame - frame.mean()
    group_means = centred.groupby(codes).transform("mean")
    ss_total = (centred**2).sum().to_numpy()
    ss_between = (group_means**2).sum().to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ss_total > 0, ss_between / ss_total, np.nan)


def kruskal_wallis(values: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kruskal-Wallis H and p per column, all columns in one vectorised scipy call."""
    samples = [values[codes == group] for group in np.unique(codes)]
    result = stats.kruskal(*samples, axis=0)
    return np.atleast_1d(result.statistic), np.atleast_1d(result.pvalue)


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """FDR-adjusted q-values; undefined p-values (constant dimensions) stay missing."""
    q_values = np.full(len(p_values), np.nan)
    defined = np.isfinite(p_values)
    if defined.any():
        q_values[defined] = multipletests(p_values[defined], method="fdr_bh")[1]
    return q_values

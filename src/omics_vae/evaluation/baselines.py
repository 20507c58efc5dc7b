"""The embeddings benchmarked beside the model's: the unintegrated PCA (scIB's baseline)
and Harmony on it, both computed from the processed cells."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import scanpy as sc
from anndata import AnnData

from omics_vae.evaluation.cells import HARMONY_KEY, PCA_KEY, EvaluationInputError
from omics_vae.schemas.evaluation import EvaluationParams

logger = logging.getLogger(__name__)


def baseline_embeddings(
    model_input: AnnData,
    positions: np.ndarray,
    obs: pd.DataFrame,
    batch_key: str,
    config: EvaluationParams,
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The baselines of the evaluated cells.

    The unintegrated PCA is always computed: scib-metrics' PCR comparison needs it, even
    when it is not benchmarked itself (``baselines.pca: false``).

    Args:
        model_input: The processed cells (log-normalised expression in ``X``).
        positions: Row of each evaluated cell in ``model_input``.
        obs: The evaluated cells' ``obs`` (for the batch Harmony corrects).
        batch_key: The batch column of ``obs``.
        config: The ``evaluation`` parameters (``baselines``, ``seed``).

    Returns:
        ``(obsm, names)``: the embeddings by obsm key (``X_pca``, and ``X_harmony`` when
        asked for and the cells hold more than one batch) and the benchmarked ones by display name.
    """
    obsm = {PCA_KEY: unintegrated_pca(model_input, positions, config)}
    names = {}
    if config.baselines.pca:
        names["pca"] = PCA_KEY
    if config.baselines.harmony:
        if obs[batch_key].nunique() < 2:
            logger.info("Harmony baseline skipped: the evaluated cells are all of one batch")
        else:
            obsm[HARMONY_KEY] = harmony(obsm[PCA_KEY], obs, batch_key, config.seed)
            names["harmony"] = HARMONY_KEY
    return obsm, names


def unintegrated_pca(
    model_input: AnnData, positions: np.ndarray, config: EvaluationParams
) -> np.ndarray:
    """PCA of the log-normalised highly variable genes, the scIB unintegrated baseline."""
    genes = np.ones(model_input.n_vars, dtype=bool)
    if "highly_variable" in model_input.var:
        genes = model_input.var["highly_variable"].to_numpy(dtype=bool)
    expression = model_input.X[positions][:, genes]
    n_comps = min(config.baselines.n_comps, expression.shape[0] - 1, expression.shape[1] - 1)
    if n_comps < 2:
        raise EvaluationInputError(
            f"model_input has {int(genes.sum())} (highly variable) genes and "
            f"{len(positions)} evaluated cells: too few for a PCA baseline."
        )
    return sc.pp.pca(expression, n_comps=n_comps, random_state=config.seed)


def harmony(pcs: np.ndarray, obs: pd.DataFrame, batch_key: str, seed: int) -> np.ndarray:
    """Harmony-corrected principal components (harmonypy)."""
    import harmonypy  # noqa: PLC0415 (imported by the evaluation only: start-up stays light)

    result = harmonypy.run_harmony(
        np.asarray(pcs, dtype=np.float64), obs[[batch_key]], [batch_key], random_state=seed
    )
    corrected = np.asarray(result.Z_corr)
    # harmonypy < 0.1 returns components x cells, later versions cells x components
    # (which is why scanpy's harmony_integrate breaks with them: scverse/scanpy#3940).
    if corrected.shape[0] != len(obs):
        corrected = corrected.T
    return corrected.astype(np.float32)

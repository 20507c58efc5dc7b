"""2-D UMAP layouts of the benchmarked embeddings, for the figures."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import scanpy as sc
from anndata import AnnData

from omics_vae.evaluation.cells import (
    BASELINE,
    MODEL,
    RECORD_KEY,
    benchmark_subsample,
    cell_labels,
)
from omics_vae.schemas.evaluation import UmapParams

logger = logging.getLogger(__name__)


def compute_umaps(evaluation_cells: AnnData, config: UmapParams) -> pd.DataFrame:
    """2-D UMAP of each benchmarked embedding, on the benchmark subsample.

    Args:
        evaluation_cells: Output of
            :func:`omics_vae.evaluation.preparation.prepare_evaluation_cells`.
        config: The ``evaluation.umap`` parameters.

    Returns:
        Long table: ``cell``, ``embedding``, ``role``, ``umap_1``, ``umap_2``, ``batch``,
        ``cell_type`` (missing without a cell-type key).
    """
    info = evaluation_cells.uns[RECORD_KEY]
    cells = benchmark_subsample(evaluation_cells)
    n_neighbors = min(config.n_neighbors, cells.n_obs - 1)
    frames = []
    for name, key in info["embeddings"].items():
        layout = umap_layout(np.asarray(cells.obsm[key]), cells.obs_names, n_neighbors, config)
        frames.append(
            pd.DataFrame(
                {
                    "cell": cells.obs_names,
                    "embedding": name,
                    "role": MODEL if name == info["model"] else BASELINE,
                    "umap_1": layout[:, 0],
                    "umap_2": layout[:, 1],
                    **cell_labels(cells.obs, info),
                }
            )
        )
        logger.info("UMAP of %s on %d cells", name, cells.n_obs)
    return pd.concat(frames, ignore_index=True)


def umap_layout(
    embedding: np.ndarray, cell_names: pd.Index, n_neighbors: int, config: UmapParams
) -> np.ndarray:
    """Seeded 2-D UMAP coordinates (cells x 2) of one embedding."""
    adata = AnnData(
        np.zeros((len(embedding), 0), dtype=np.float32),
        obs=pd.DataFrame(index=cell_names),
        obsm={"X_embedding": embedding},
    )
    sc.pp.neighbors(adata, n_neighbors=n_neighbors, use_rep="X_embedding", random_state=config.seed)
    sc.tl.umap(adata, min_dist=config.min_dist, random_state=config.seed)
    return adata.obsm["X_umap"]

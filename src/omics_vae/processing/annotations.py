"""New AnnData objects that share matrices but own their annotations, and the lineage
record each processing step adds to."""

from __future__ import annotations

import copy
from typing import Any

import anndata as ad
import numpy as np

RECORD_KEY = "data_processing"
# The layer of the processed data that keeps the raw counts (the models read it).
COUNTS_LAYER = "counts"


def predicted_label_columns(label_key: str) -> tuple[str, str]:
    """obs columns of the embeddings holding a model's predicted label and its
    probability, for the label column ``label_key``."""
    return f"predicted_{label_key}", f"predicted_{label_key}_probability"


def label_probabilities_key(label_key: str) -> str:
    """obsm key of the embeddings holding every cell's probability of each category
    (columns in the order of the categories of ``obs["predicted_<label_key>"]``)."""
    return f"predicted_{label_key}_probabilities"


def with_own_annotations(adata: ad.AnnData) -> ad.AnnData:
    """A new AnnData sharing ``adata``'s matrices, with its own obs, var and uns."""
    return ad.AnnData(
        X=adata.X,
        obs=adata.obs.copy(),
        var=adata.var.copy(),
        uns=copy.deepcopy(dict(adata.uns)),
        layers=dict(adata.layers),
        obsm=dict(adata.obsm),
        varm=dict(adata.varm),
    )


def subset(
    adata: ad.AnnData, cells: np.ndarray | None = None, genes: np.ndarray | None = None
) -> ad.AnnData:
    """The cells and genes selected by the boolean masks (``None``: all), as a new
    AnnData with its own matrices and annotations: ``adata[cells, genes].copy()``.

    Each matrix is sliced once; AnnData's view ``.copy()`` builds the slice and then
    copies it, twice the output's memory at its peak (for a million cells, the peak of
    the whole data processing).
    """
    rows = slice(None) if cells is None else np.asarray(cells, dtype=bool)
    columns = slice(None) if genes is None else np.asarray(genes, dtype=bool)

    def sliced(matrix: Any) -> Any:
        # Only the axes selected: scipy's matrix[:] is a copy too.
        part = matrix if cells is None else matrix[rows]
        return part if genes is None else part[:, columns]

    return ad.AnnData(
        X=None if adata.X is None else sliced(adata.X),
        obs=adata.obs.iloc[_positions(rows, adata.n_obs)].copy(),
        var=adata.var.iloc[_positions(columns, adata.n_vars)].copy(),
        uns=copy.deepcopy(dict(adata.uns)),
        layers={key: sliced(matrix) for key, matrix in adata.layers.items()},
        obsm={key: value[rows] for key, value in adata.obsm.items()},
        varm={key: value[columns] for key, value in adata.varm.items()},
    )


def _positions(selection: slice | np.ndarray, n: int) -> np.ndarray:
    return np.arange(n) if isinstance(selection, slice) else np.flatnonzero(selection)


def lineage_record(adata: ad.AnnData) -> dict[str, Any]:
    """The lineage record in ``adata.uns``, created when a step runs on outside data."""
    return adata.uns.setdefault(RECORD_KEY, {})

"""New AnnData objects that share matrices but own their annotations, and the lineage
record each processing step adds to."""

from __future__ import annotations

import copy
from typing import Any

import anndata as ad

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


def lineage_record(adata: ad.AnnData) -> dict[str, Any]:
    """The lineage record in ``adata.uns``, created when a step runs on outside data."""
    return adata.uns.setdefault(RECORD_KEY, {})

"""Library-size normalisation and log1p, keeping the raw counts beside."""

from __future__ import annotations

import anndata as ad
import scanpy as sc

from omics_vae.processing.annotations import with_own_annotations


def normalise_counts(filtered: ad.AnnData, target_sum: float | None) -> ad.AnnData:
    """Normalises each cell to ``target_sum`` counts and log1p-transforms.

    Args:
        filtered: Cells x genes with raw counts in ``X``.
        target_sum: Counts per cell after normalisation; None means the median total.

    Returns:
        A new AnnData with ``X = log1p(normalize_total(counts))`` (a new matrix) and the
        raw counts in ``layers["counts"]`` (the input's ``X``, shared, not copied).
    """
    normalised = with_own_annotations(filtered)
    normalised.layers["counts"] = filtered.X
    normalised.X = sc.pp.normalize_total(filtered, target_sum=target_sum, inplace=False)["X"]
    # In place on the freshly normalised matrix only; also records uns["log1p"].
    sc.pp.log1p(normalised)
    return normalised

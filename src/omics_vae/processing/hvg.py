"""Highly variable genes, ranked within each batch, with seurat_v3's LOESS span widened
step by step where its fit fails."""

from __future__ import annotations

import logging

import anndata as ad
import scanpy as sc

from omics_vae.processing.annotations import lineage_record, with_own_annotations
from omics_vae.processing.errors import PARAMETERS_FILE, DataProcessingError
from omics_vae.schemas.data_processing import DataProcessingParams, HVGParams

logger = logging.getLogger(__name__)

# Wider LOESS spans for seurat_v3 to fall back on; 1.0 is a global quadratic fit.
_WIDER_SPANS = (0.5, 0.7, 1.0)


def select_highly_variable_genes(
    normalised: ad.AnnData, params: DataProcessingParams
) -> ad.AnnData:
    """Flags highly variable genes, ranked within each batch.

    ``seurat_v3`` reads the raw counts in ``layers["counts"]``; the dispersion-based
    flavors read the log-normalised ``X``. ``n_top_genes`` larger than the number of
    genes is capped, with a warning. seurat_v3's LOESS fit of variance on mean is
    singular in batches where many genes share a mean (few cells, low counts; scanpy
    issue #1504); the span is then widened step by step, with a warning.

    Args:
        normalised: Output of ``normalise_counts``.
        params: The ``data_processing`` parameter block.

    Returns:
        A new AnnData with ``var["highly_variable"]`` and scanpy's HVG statistics;
        with ``hvg.subset`` only the highly variable genes are kept (a copy).

    Raises:
        DataProcessingError: seurat_v3's LOESS fit fails even with the widest span.
    """
    hvg = params.hvg
    n_top_genes = hvg.n_top_genes
    if n_top_genes > normalised.n_vars:
        logger.warning(
            "data_processing.hvg.n_top_genes = %d exceeds the %d genes left after QC; "
            "using %d, so every gene is flagged highly variable.",
            n_top_genes,
            normalised.n_vars,
            normalised.n_vars,
        )
        n_top_genes = normalised.n_vars
    selected = with_own_annotations(normalised)
    span = _highly_variable_genes(selected, hvg, n_top_genes, params.batch_key)
    n_highly_variable = int(selected.var["highly_variable"].sum())
    lineage_record(selected).update(n_highly_variable_genes=n_highly_variable, hvg_span=span)
    logger.info(
        "Flagged %d highly variable genes (%s, batch key %r)%s.",
        n_highly_variable,
        hvg.flavor,
        params.batch_key,
        "; kept only those" if hvg.subset else "",
    )
    return selected


def _highly_variable_genes(
    adata: ad.AnnData, hvg: HVGParams, n_top_genes: int, batch_key: str
) -> float | None:
    """Runs scanpy's HVG selection in place; returns the LOESS span used by seurat_v3."""
    options = {
        "flavor": hvg.flavor,
        "n_top_genes": n_top_genes,
        "batch_key": batch_key,
        "subset": hvg.subset,
    }
    if hvg.flavor != "seurat_v3":
        sc.pp.highly_variable_genes(adata, **options)
        return None
    spans = [hvg.span, *(span for span in _WIDER_SPANS if span > hvg.span)]
    failure: ValueError | None = None
    for span in spans:
        try:
            # The fit fails before scanpy writes anything, so a retry starts clean.
            sc.pp.highly_variable_genes(adata, layer="counts", span=span, **options)
        except ValueError as error:  # skmisc reports a failed LOESS fit as ValueError
            failure = error
            reason = error.args[0] if error.args else error
            reason = reason.decode().strip() if isinstance(reason, bytes) else reason
            continue
        if span != hvg.span:
            logger.warning(
                "seurat_v3's LOESS fit failed with data_processing.hvg.span = %g (%s); "
                "used span %g. Set data_processing.hvg.span: %g in %s to skip the failing "
                "attempts.",
                hvg.span,
                reason,
                span,
                span,
                PARAMETERS_FILE,
            )
        return span
    raise DataProcessingError(
        f"seurat_v3's LOESS fit failed for every span in {spans} ({reason}); a batch may "
        f"have too few cells. Set data_processing.hvg.flavor: seurat in {PARAMETERS_FILE}, "
        "or merge small batches."
    ) from failure

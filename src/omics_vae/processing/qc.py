"""Quality control: per-cell metrics, the cell and gene filters, and their summary."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from omics_vae.processing.annotations import lineage_record, subset, with_own_annotations
from omics_vae.processing.errors import LOCAL_PARAMETERS_FILE, RAW_DATA, DataProcessingError
from omics_vae.processing.hvg import check_batches_can_be_ranked
from omics_vae.processing.split import check_cells_suffice
from omics_vae.schemas.data_processing import DataProcessingParams, QCParams

logger = logging.getLogger(__name__)

QC_METRICS = ("n_genes_by_counts", "total_counts", "pct_counts_mt")
_BINCOUNT_BLOCK = 1 << 24


def filter_cells_and_genes(
    validated: ad.AnnData, params: DataProcessingParams, batch_size: int | None = None
) -> tuple[ad.AnnData, pd.DataFrame, pd.DataFrame]:
    """Computes per-cell QC metrics and removes low-quality cells, then rare genes.

    Before returning (so before its summary is saved), it checks what the next steps
    need of the cells it keeps: a batch to rank highly variable genes in
    (``hvg.check_batches_can_be_ranked``) and cells enough for the split and a
    training batch (``split.check_cells_suffice``).

    Each removed cell is counted under the first filter it fails, in the order
    ``min_genes_per_cell``, ``min_counts_per_cell``, ``max_pct_mito``, so that
    ``n_cells_before`` minus the three ``removed_*`` columns equals ``n_cells_after``.

    Args:
        validated: Output of ``validate_raw_data``: counts in ``X``.
        params: The ``data_processing`` parameter block.
        batch_size: ``training.trainer.batch_size``, which the training split must reach;
            ``None`` checks the split only.

    Returns:
        The filtered cells (``obs`` gains the QC metrics, computed on all genes, and
        ``var`` gains ``mt`` and ``n_cells``; the matrix is copied only if something was
        removed), the metrics of every cell before
        filtering with a ``passed_qc`` column, and a summary table with one row per
        batch and a ``total`` row. The gene columns of the summary describe the global
        gene filter and are the same in every row.

    Raises:
        DataProcessingError: The thresholds would remove every cell, every cell of a
            batch, or every gene, or leave too few cells for the next steps.
    """
    qc = params.qc
    annotated = with_own_annotations(validated)
    annotated.var["mt"] = annotated.var_names.str.startswith(qc.mito_prefix)
    if not annotated.var["mt"].any():
        logger.warning(
            "No gene name starts with %r, so %% mito is 0 for every cell; set "
            "data_processing.qc.mito_prefix (e.g. 'mt-' for mouse) in %s.",
            qc.mito_prefix,
            LOCAL_PARAMETERS_FILE,
        )
    for column, values in cell_qc_metrics(annotated.X, annotated.var["mt"].to_numpy()).items():
        annotated.obs[column] = values

    failed = _failed_cell_filters(annotated.obs, qc)
    keep = ~failed.any(axis=1).to_numpy()
    batches = annotated.obs[params.batch_key]
    _check_batches_survive(annotated.obs, failed, keep, params)

    cells = annotated if keep.all() else subset(annotated, cells=keep)
    filtered = _filter_genes(cells, qc.min_cells_per_gene)
    _check_next_steps_can_run(filtered, annotated.obs, failed, params, batch_size)
    n_genes_before = annotated.n_vars

    summary = _qc_summary(batches, failed, keep)
    summary["n_genes_before"] = n_genes_before
    summary["removed_min_cells"] = n_genes_before - filtered.n_vars
    summary["n_genes_after"] = filtered.n_vars
    lineage_record(filtered).update(
        n_cells_after_qc=filtered.n_obs, n_genes_after_qc=filtered.n_vars
    )
    logger.info(
        "QC kept %d of %d cells and %d of %d genes.",
        filtered.n_obs,
        annotated.n_obs,
        filtered.n_vars,
        n_genes_before,
    )
    metrics = annotated.obs[[params.batch_key, *QC_METRICS]].assign(passed_qc=keep)
    return filtered, metrics, summary


def cell_qc_metrics(counts: sparse.csr_matrix, mito: np.ndarray) -> dict[str, np.ndarray]:
    """The per-cell metrics of ``QC_METRICS``, as ``sc.pp.calculate_qc_metrics`` names and
    computes them (``n_genes_by_counts``, ``total_counts``, ``pct_counts_mt``).

    Computed here because scanpy's function also describes every gene, squaring the
    whole matrix for the variance: a copy of the counts, the peak of filtering a million
    cells, for metrics the pipeline drops. Cells without counts get 0 % mitochondrial
    counts (scanpy's 0/0 gives NaN).
    """
    total = np.ravel(counts.sum(axis=1))
    mito_total = np.ravel(counts[:, mito].sum(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        pct_mito = np.where(total > 0, mito_total / total * 100, 0.0)
    return {
        "n_genes_by_counts": counts.getnnz(axis=1),
        "total_counts": total,
        "pct_counts_mt": pct_mito,
    }


def _failed_cell_filters(obs: pd.DataFrame, qc: QCParams) -> pd.DataFrame:
    """One boolean column per cell filter: True where the cell fails it."""
    return pd.DataFrame(
        {
            "min_genes_per_cell": obs["n_genes_by_counts"] < qc.min_genes_per_cell,
            "min_counts_per_cell": obs["total_counts"] < qc.min_counts_per_cell,
            "max_pct_mito": obs["pct_counts_mt"] > qc.max_pct_mito,
        },
        index=obs.index,
    )


def _removal_reasons(obs: pd.DataFrame, failed: pd.DataFrame, params: DataProcessingParams) -> str:
    metric = {
        "min_genes_per_cell": ("n_genes_by_counts", "median genes detected"),
        "min_counts_per_cell": ("total_counts", "median total counts"),
        "max_pct_mito": ("pct_counts_mt", "median % mito"),
    }
    reasons = []
    for key, column in failed.items():
        if column.any():
            threshold = getattr(params.qc, key)
            name, label = metric[key]
            reasons.append(
                f"qc.{key} = {threshold:g} removes {int(column.sum())} "
                f"({label}: {obs[name].median():g})"
            )
    return "; ".join(reasons)


def _check_batches_survive(
    obs: pd.DataFrame, failed: pd.DataFrame, keep: np.ndarray, params: DataProcessingParams
) -> None:
    relax = f"Relax these keys under data_processing.qc in {LOCAL_PARAMETERS_FILE}"
    if not keep.any():
        raise DataProcessingError(
            f"Quality control would remove every cell ({len(obs)} cells): "
            f"{_removal_reasons(obs, failed, params)}. {relax}."
        )
    batch = obs[params.batch_key]
    for name in pd.unique(batch[~keep]):
        in_batch = (batch == name).to_numpy()
        if not keep[in_batch].any():
            raise DataProcessingError(
                f"Quality control would remove every cell of batch '{name}' "
                f"(obs['{params.batch_key}'], {int(in_batch.sum())} cells): "
                f"{_removal_reasons(obs[in_batch], failed[in_batch], params)}. "
                f"{relax}, or remove the batch from the raw data."
            )


def _check_next_steps_can_run(
    filtered: ad.AnnData,
    obs: pd.DataFrame,
    failed: pd.DataFrame,
    params: DataProcessingParams,
    batch_size: int | None,
) -> None:
    """The checks of the input contract that depend on what quality control kept."""
    reasons = _removal_reasons(obs, failed, params)
    relax = (
        f"relax the data_processing.qc thresholds in {LOCAL_PARAMETERS_FILE} ({reasons})"
        if reasons
        else None
    )
    check_cells_suffice(
        filtered.n_obs,
        params,
        batch_size,
        f"Quality control keeps {filtered.n_obs:,} of the {len(obs):,} cells of {RAW_DATA}",
        relax,
    )
    check_batches_can_be_ranked(filtered.X, filtered.obs[params.batch_key], params)


def _filter_genes(cells: ad.AnnData, min_cells: int) -> ad.AnnData:
    """Genes detected in at least ``min_cells`` cells; ``cells`` itself when all are."""
    n_cells = cells_per_gene(cells.X)
    gene_mask = n_cells >= min_cells
    if not gene_mask.any():
        raise DataProcessingError(
            f"qc.min_cells_per_gene = {min_cells} would remove every gene (the most cells "
            f"any gene is detected in is {int(n_cells.max())}). Lower "
            f"data_processing.qc.min_cells_per_gene in {LOCAL_PARAMETERS_FILE}."
        )
    # Skipping the copy when no gene goes saves a pass over the whole matrix.
    filtered = cells if gene_mask.all() else subset(cells, genes=gene_mask)
    filtered.var["n_cells"] = n_cells[gene_mask]
    return filtered


def cells_per_gene(counts: sparse.csr_matrix) -> np.ndarray:
    """In how many cells each gene has a positive count, as ``sc.pp.filter_genes``
    counts them, without its comparison matrix (a copy of the counts' structure)."""
    if not sparse.issparse(counts):
        return np.count_nonzero(np.asarray(counts) > 0, axis=0)
    counts = sparse.csr_matrix(counts)
    if not counts.has_canonical_format:  # a duplicate entry would count a cell twice
        counts = counts.copy()
        counts.sum_duplicates()
    totals = np.zeros(counts.shape[1], dtype=np.int64)
    # In blocks: bincount converts its input to int64, a copy twice the size of the
    # indices at once.
    for start in range(0, counts.nnz, _BINCOUNT_BLOCK):
        block = slice(start, start + _BINCOUNT_BLOCK)
        columns = counts.indices[block][counts.data[block] > 0]
        totals += np.bincount(columns, minlength=counts.shape[1])
    return totals


def _qc_summary(batch: pd.Series, failed: pd.DataFrame, keep: np.ndarray) -> pd.DataFrame:
    fails_genes = failed["min_genes_per_cell"].to_numpy()
    fails_counts = failed["min_counts_per_cell"].to_numpy()
    fails_mito = failed["max_pct_mito"].to_numpy()
    per_cell = pd.DataFrame(
        {
            "n_cells_before": np.ones(len(keep), dtype=np.int64),
            "removed_min_genes": fails_genes,
            "removed_min_counts": fails_counts & ~fails_genes,
            "removed_pct_mito": fails_mito & ~fails_genes & ~fails_counts,
            "n_cells_after": keep,
        },
        dtype=np.int64,
    )
    # Grouping by categorical codes, not by strings: this runs on millions of cells.
    per_batch = per_cell.groupby(pd.Categorical(batch), observed=True).sum()
    per_batch.index = per_batch.index.astype(object)
    per_batch.loc["total"] = per_cell.sum()
    return per_batch.rename_axis("batch").reset_index()

"""The first processing step: the raw data checked against the parameters, counts in X.

The checks of the input contract that the raw data alone decide run here, before any work:
the configured obs keys exist, every cell has a batch and (with a cell-type key) a label,
every stored count is a non-negative integer (``counts``), and there are cells enough for
the split and a training batch. What quality control changes is checked again at the end
of ``qc.filter_cells_and_genes``, still before anything is saved.
"""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from omics_vae.processing.annotations import RECORD_KEY
from omics_vae.processing.counts import as_float32_csr, check_counts, counts_matrix
from omics_vae.processing.errors import (
    LOCAL_CATALOG_FILE,
    LOCAL_PARAMETERS_FILE,
    RAW_DATA,
    DataProcessingError,
)
from omics_vae.processing.split import check_cells_suffice
from omics_vae.schemas.data_processing import DataProcessingParams

logger = logging.getLogger(__name__)


def validate_raw_data(
    raw_counts: ad.AnnData, params: DataProcessingParams, batch_size: int | None = None
) -> ad.AnnData:
    """Checks the raw data against the parameters and puts the counts in ``X``.

    Args:
        raw_counts: Cells x genes with raw integer counts in ``X`` or in a layer.
        params: The ``data_processing`` parameter block.
        batch_size: ``training.trainer.batch_size``, which the training split must reach;
            ``None`` checks the split only.

    Returns:
        A new AnnData holding only the counts (``X``, float32 CSR), ``obs`` and ``var``;
        other layers, ``obsm`` and ``uns`` are dropped so nothing stale reaches the
        model input. ``X`` shares memory with the input when it already is float32 CSR.
        Gene and cell names are made unique, batch and cell-type columns categorical.

    Raises:
        DataProcessingError: A configured key is missing, the batch or the cell type has
            missing values, the counts are not non-negative integers, or the cells are
            too few for the split and a training batch.
    """
    if raw_counts.n_vars == 0:
        raise DataProcessingError(
            f"{RAW_DATA} has no genes ({raw_counts.n_obs:,} cells x 0 genes). Point "
            f"{RAW_DATA} in {LOCAL_CATALOG_FILE} at a file of counts."
        )
    _check_obs_key(raw_counts, params.batch_key, "batch_key")
    if params.cell_type_key is not None:
        _check_obs_key(raw_counts, params.cell_type_key, "cell_type_key")
    check_cells_suffice(
        raw_counts.n_obs, params, batch_size, f"{RAW_DATA} has {raw_counts.n_obs:,} cells"
    )
    counts = counts_matrix(raw_counts, params.counts_layer)
    check_counts(raw_counts, counts, params.counts_layer)

    validated = ad.AnnData(
        X=as_float32_csr(counts),
        obs=_with_unique_index(raw_counts.obs, "cell"),
        var=_with_unique_index(raw_counts.var, "gene"),
    )
    for key in (params.batch_key, params.cell_type_key):
        if key is not None:
            # Only the categories cells have: scanpy ranks genes in every category.
            column = validated.obs[key].astype("category")
            validated.obs[key] = column.cat.remove_unused_categories()
    _log_empty_cells_and_genes(validated.X)
    validated.uns[RECORD_KEY] = {
        "params": params.model_dump(mode="json"),
        "n_cells_raw": validated.n_obs,
        "n_genes_raw": validated.n_vars,
    }
    return validated


def _check_obs_key(adata: ad.AnnData, key: str, parameter: str) -> None:
    if key in adata.obs.columns:
        _check_no_missing_values(adata, key, parameter)
        return
    null_hint = (
        " or to null if the data has no cell-type labels" if parameter == "cell_type_key" else ""
    )
    raise DataProcessingError(
        f"obs column '{key}' (data_processing.{parameter}) is not in the raw data "
        f"(catalog entry raw_counts). Available obs columns: {list(adata.obs.columns)}. "
        f"Set data_processing.{parameter} in {LOCAL_PARAMETERS_FILE} to one of them{null_hint}."
    )


def _check_no_missing_values(adata: ad.AnnData, key: str, parameter: str) -> None:
    missing = adata.obs[key].isna().to_numpy()
    n_missing = int(np.count_nonzero(missing))
    if not n_missing:
        return
    examples = list(adata.obs_names[missing][:3])
    counted = f"{n_missing:,} of {adata.n_obs:,} cells (e.g. {examples})"
    if parameter == "batch_key":
        raise DataProcessingError(
            f"obs['{key}'] (data_processing.batch_key) of {RAW_DATA} has no batch for "
            f"{counted}. Give them a batch or remove them from the raw data (the file "
            f"{RAW_DATA} names in {LOCAL_CATALOG_FILE})."
        )
    if n_missing == adata.n_obs:
        raise DataProcessingError(
            f"obs['{key}'] (data_processing.cell_type_key) of {RAW_DATA} has no cell type "
            f"(NaN) for {counted}: the column holds no label at all. Set "
            f"data_processing.cell_type_key: null in {LOCAL_PARAMETERS_FILE} to process the "
            "data without labels (inVAE then trains without a biological prior and only "
            "batch metrics are computed), or fill the labels you know in the raw data (the "
            f"file {RAW_DATA} names in {LOCAL_CATALOG_FILE}); cells left without one train "
            "as unlabelled cells."
        )
    logger.info(
        "obs['%s'] (data_processing.cell_type_key) of %s has no cell type for %s: they are "
        "kept as unlabelled cells (inVAE learns from them semi-supervised and predicts "
        "their label) and left out of the bio-conservation metrics.",
        key,
        RAW_DATA,
        counted,
    )


def _with_unique_index(frame: pd.DataFrame, what: str) -> pd.DataFrame:
    """A copy of obs or var whose names are unique, as ``var_names_make_unique`` does."""
    frame = frame.copy()
    if not frame.index.is_unique:
        duplicated = frame.index[frame.index.duplicated()].unique()
        logger.warning(
            "%d %s names occur more than once (e.g. %s); made unique by appending '-1', '-2', ...",
            len(duplicated),
            what,
            list(duplicated[:5]),
        )
        frame.index = ad.utils.make_index_unique(frame.index.astype(str))
    return frame


def _log_empty_cells_and_genes(counts: sparse.csr_matrix) -> None:
    empty_cells = int(np.count_nonzero(np.diff(counts.indptr) == 0))
    empty_genes = int(np.count_nonzero(np.bincount(counts.indices, minlength=counts.shape[1]) == 0))
    logger.info(
        "Raw data: %d cells x %d genes; %d cells and %d genes have no counts "
        "(the QC filters remove them).",
        counts.shape[0],
        counts.shape[1],
        empty_cells,
        empty_genes,
    )

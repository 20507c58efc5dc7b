"""The first processing step: the raw data checked against the parameters, counts in X."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from omics_vae.processing.annotations import RECORD_KEY
from omics_vae.processing.counts import as_float32_csr, check_counts, counts_matrix
from omics_vae.processing.errors import LOCAL_PARAMETERS_FILE, DataProcessingError
from omics_vae.schemas.data_processing import DataProcessingParams

logger = logging.getLogger(__name__)


def validate_raw_data(raw_counts: ad.AnnData, params: DataProcessingParams) -> ad.AnnData:
    """Checks the raw data against the parameters and puts the counts in ``X``.

    Args:
        raw_counts: Cells x genes with raw integer counts in ``X`` or in a layer.
        params: The ``data_processing`` parameter block.

    Returns:
        A new AnnData holding only the counts (``X``, float32 CSR), ``obs`` and ``var``;
        other layers, ``obsm`` and ``uns`` are dropped so nothing stale reaches the
        model input. ``X`` shares memory with the input when it already is float32 CSR.
        Gene and cell names are made unique, batch and cell-type columns categorical.

    Raises:
        DataProcessingError: A configured key is missing, the batch has missing values
            or the counts are not non-negative integers.
    """
    _check_obs_key(raw_counts, params.batch_key, "batch_key")
    if params.cell_type_key is not None:
        _check_obs_key(raw_counts, params.cell_type_key, "cell_type_key")
    counts = counts_matrix(raw_counts, params.counts_layer)
    check_counts(raw_counts, counts, params.counts_layer)

    validated = ad.AnnData(
        X=as_float32_csr(counts),
        obs=_with_unique_index(raw_counts.obs, "cell"),
        var=_with_unique_index(raw_counts.var, "gene"),
    )
    for key in (params.batch_key, params.cell_type_key):
        if key is not None:
            validated.obs[key] = validated.obs[key].astype("category")
    _log_empty_cells_and_genes(validated.X)
    validated.uns[RECORD_KEY] = {
        "params": params.model_dump(mode="json"),
        "n_cells_raw": validated.n_obs,
        "n_genes_raw": validated.n_vars,
    }
    return validated


def _check_obs_key(adata: ad.AnnData, key: str, parameter: str) -> None:
    if key in adata.obs.columns:
        if parameter == "batch_key" and adata.obs[key].isna().any():
            raise DataProcessingError(
                f"obs['{key}'] (data_processing.batch_key) has "
                f"{int(adata.obs[key].isna().sum())} cells without a batch; label them "
                "or remove them from the raw data."
            )
        return
    null_hint = (
        " or to null if the data has no cell-type labels" if parameter == "cell_type_key" else ""
    )
    raise DataProcessingError(
        f"obs column '{key}' (data_processing.{parameter}) is not in the raw data "
        f"(catalog entry raw_counts). Available obs columns: {list(adata.obs.columns)}. "
        f"Set data_processing.{parameter} in {LOCAL_PARAMETERS_FILE} to one of them{null_hint}."
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

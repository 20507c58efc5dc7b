"""Nodes of the single-cell data-processing pipeline: raw counts to model input.

Each node validates the ``data_processing`` parameter block and calls one step of the
Kedro-free library ``omics_vae.processing``, whose module docstring states the memory
policy: no step modifies or needlessly copies a matrix.
"""

from __future__ import annotations

import anndata as ad
import pandas as pd
from matplotlib.figure import Figure

from omics_vae.processing import figures, hvg, normalisation, qc, split, validation
from omics_vae.processing.errors import DataProcessingError
from omics_vae.schemas.data_processing import DataProcessingParams

__all__ = [
    "DataProcessingError",
    "filter_cells_and_genes",
    "normalise_counts",
    "plot_qc_metrics",
    "select_highly_variable_genes",
    "split_cells",
    "validate_raw_data",
]


def validate_raw_data(
    raw_counts: ad.AnnData, parameters: DataProcessingParams, batch_size: int | None = None
) -> ad.AnnData:
    """Checks the raw data against the parameters and puts the counts in ``X``.

    ``batch_size`` is ``training.trainer.batch_size``: data too small to fill one
    training batch are refused here, before anything is saved.
    See ``omics_vae.processing.validation.validate_raw_data``.
    """
    return validation.validate_raw_data(raw_counts, parameters, batch_size)


def filter_cells_and_genes(
    validated: ad.AnnData, parameters: DataProcessingParams, batch_size: int | None = None
) -> tuple[ad.AnnData, pd.DataFrame, pd.DataFrame]:
    """Removes low-quality cells, then rare genes: ``(filtered, qc_metrics, qc_summary)``.

    See ``omics_vae.processing.qc.filter_cells_and_genes``.
    """
    return qc.filter_cells_and_genes(validated, parameters, batch_size)


def normalise_counts(filtered: ad.AnnData, parameters: DataProcessingParams) -> ad.AnnData:
    """Normalises each cell to ``normalisation.target_sum`` counts and log1p-transforms.

    See ``omics_vae.processing.normalisation.normalise_counts``.
    """
    target_sum = parameters.normalisation.target_sum
    return normalisation.normalise_counts(filtered, target_sum)


def select_highly_variable_genes(
    normalised: ad.AnnData, parameters: DataProcessingParams
) -> ad.AnnData:
    """Flags highly variable genes, ranked within each batch.

    See ``omics_vae.processing.hvg.select_highly_variable_genes``.
    """
    return hvg.select_highly_variable_genes(normalised, parameters)


def split_cells(selected: ad.AnnData, parameters: DataProcessingParams) -> ad.AnnData:
    """Assigns every cell to train, val or test, reproducibly for ``split.seed``.

    See ``omics_vae.processing.split.split_cells``.
    """
    return split.split_cells(selected, parameters)


def plot_qc_metrics(qc_metrics: pd.DataFrame, parameters: DataProcessingParams) -> Figure:
    """Draws the QC metrics per batch, before (top row) and after (bottom row) filtering.

    See ``omics_vae.processing.figures.plot_qc_metrics``.
    """
    return figures.plot_qc_metrics(qc_metrics, parameters)

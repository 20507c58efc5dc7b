"""Tiny raw-count AnnData objects and parameters for the processing tests, as fixtures.

The conftest modules of ``tests/processing`` and ``tests/pipelines/data_processing``
import the fixtures, so both folders' tests get the same data through them (tests never
import this module's data themselves, only ``as_params``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from omics_vae.processing.hvg import select_highly_variable_genes
from omics_vae.processing.normalisation import normalise_counts
from omics_vae.processing.qc import filter_cells_and_genes
from omics_vae.processing.validation import validate_raw_data
from omics_vae.schemas.data_processing import DataProcessingParams

N_MITO_GENES = 5
N_EMPTY_GENES = 2
LOW_COUNT_CELLS_PER_BATCH = 4
HIGH_MITO_CELLS_PER_BATCH = 3


def simulate_raw_counts(
    n_cells: int = 300,
    n_genes: int = 200,
    n_batches: int = 3,
    n_cell_types: int = 3,
    seed: int = 0,
) -> ad.AnnData:
    """Negative-binomial counts with batch and cell-type effects and some bad cells.

    Per batch, the first ``LOW_COUNT_CELLS_PER_BATCH`` cells have almost no counts and
    the next ``HIGH_MITO_CELLS_PER_BATCH`` are dominated by mitochondrial genes; the
    last ``N_EMPTY_GENES`` genes are never detected.
    """
    rng = np.random.default_rng(seed)
    batch = np.sort(np.arange(n_cells) % n_batches)
    cell_type = rng.integers(0, n_cell_types, n_cells)
    gene_mean = rng.gamma(0.8, 1.5, n_genes)
    type_effect = rng.lognormal(0.0, 1.0, (n_cell_types, n_genes))
    batch_effect = rng.lognormal(0.0, 0.3, (n_batches, n_genes))
    size_factor = rng.lognormal(0.0, 0.3, n_cells)

    first_of_batch = np.searchsorted(batch, np.arange(n_batches))
    low_count = (first_of_batch[:, None] + np.arange(LOW_COUNT_CELLS_PER_BATCH)).ravel()
    high_mito = (
        first_of_batch[:, None] + LOW_COUNT_CELLS_PER_BATCH + np.arange(HIGH_MITO_CELLS_PER_BATCH)
    ).ravel()
    size_factor[low_count] = 0.01

    mean = gene_mean * type_effect[cell_type] * batch_effect[batch] * size_factor[:, None]
    mean[high_mito, :N_MITO_GENES] *= 200.0
    mean[:, -N_EMPTY_GENES:] = 0.0
    dispersion = 2.0
    counts = rng.negative_binomial(dispersion, dispersion / (dispersion + mean))

    gene_names = [f"MT-{i}" for i in range(N_MITO_GENES)] + [
        f"GENE{i}" for i in range(N_MITO_GENES, n_genes)
    ]
    obs = pd.DataFrame(
        {
            "batch": pd.Categorical([f"batch{b}" for b in batch]),
            "cell_type": pd.Categorical([f"type{t}" for t in cell_type]),
        },
        index=[f"cell{i}" for i in range(n_cells)],
    )
    return ad.AnnData(
        X=sparse.csr_matrix(counts.astype(np.float32)),
        obs=obs,
        var=pd.DataFrame(index=gene_names),
    )


def _make_parameters() -> dict[str, Any]:
    """The ``data_processing`` block as Kedro passes it, with thresholds for tiny data."""
    return {
        "counts_layer": None,
        "batch_key": "batch",
        "cell_type_key": "cell_type",
        "qc": {
            "min_genes_per_cell": 20,
            "min_counts_per_cell": 50,
            "max_pct_mito": 20.0,
            "min_cells_per_gene": 3,
            "mito_prefix": "MT-",
        },
        "normalisation": {"target_sum": 10000.0},
        "hvg": {"n_top_genes": 50, "flavor": "seurat_v3", "span": 0.3, "subset": False},
        "split": {"train": 0.8, "val": 0.1, "test": 0.1, "seed": 0},
    }


@pytest.fixture
def simulation() -> dict[str, int]:
    """What the simulator plants, for exact assertions on what QC removes."""
    return {
        "n_mito_genes": N_MITO_GENES,
        "n_empty_genes": N_EMPTY_GENES,
        "low_count_cells_per_batch": LOW_COUNT_CELLS_PER_BATCH,
        "high_mito_cells_per_batch": HIGH_MITO_CELLS_PER_BATCH,
    }


def as_params(parameters: dict[str, Any]) -> DataProcessingParams:
    """The validated block a library step takes, from the dict a test has edited."""
    return DataProcessingParams.model_validate(parameters)


@pytest.fixture
def make_raw_counts() -> Callable[..., ad.AnnData]:
    """The simulator itself, for tests that need other sizes or seeds."""
    return simulate_raw_counts


@pytest.fixture
def raw_counts() -> ad.AnnData:
    return simulate_raw_counts()


@pytest.fixture
def parameters() -> dict[str, Any]:
    return _make_parameters()


@pytest.fixture
def validated(raw_counts: ad.AnnData, parameters: dict[str, Any]) -> ad.AnnData:
    return validate_raw_data(raw_counts, as_params(parameters))


@pytest.fixture
def filtered(validated: ad.AnnData, parameters: dict[str, Any]) -> ad.AnnData:
    return filter_cells_and_genes(validated, as_params(parameters))[0]


@pytest.fixture
def normalised(filtered: ad.AnnData, parameters: dict[str, Any]) -> ad.AnnData:
    return normalise_counts(filtered, parameters["normalisation"]["target_sum"])


@pytest.fixture
def annotated(normalised: ad.AnnData, parameters: dict[str, Any]) -> ad.AnnData:
    return select_highly_variable_genes(normalised, as_params(parameters))

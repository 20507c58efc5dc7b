"""Generated malformed raw data thrown at the processing: each input is processed or
refused with the project's DataProcessingError, never a crash and never a bare
third-party exception.

Hypothesis draws a small, valid raw dataset, then spoils it with a few defects at once:
counts of random dtypes and layouts (dense, CSR, CSC), NaN, infinite, negative and
non-integer counts, a missing or empty batch or label column, NaN batches or labels, a
batch category without cells,
duplicate cell and gene names, cells and genes without counts, one-cell batches, too few
cells or no genes at all, a counts layer that is not there; with random processing
parameters and training batch sizes. The input checks run on every input; an input they
accept goes through the whole processing (QC, normalisation, HVGs, split), which on data
this small takes milliseconds. The draws are derandomised, so CI runs the same inputs
every time.
"""

from __future__ import annotations

import warnings
from typing import Any

import anndata as ad
import numba
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from scipy import sparse

from omics_vae.processing.errors import DataProcessingError
from omics_vae.processing.hvg import select_highly_variable_genes
from omics_vae.processing.normalisation import normalise_counts
from omics_vae.processing.qc import filter_cells_and_genes
from omics_vae.processing.split import split_cells
from omics_vae.processing.validation import validate_raw_data
from omics_vae.schemas.data_processing import DataProcessingParams

N_EXAMPLES = 250
DTYPES = ("float64", "int32", "uint8", "bool", "float16", "complex64", "U2", "object")
BAD_VALUES = (np.nan, np.inf, -np.inf, -1.0, 0.5, 2.5)
DEFECTS = (
    "dtype",
    "sparse_layout",
    "bad_values",
    "no_batch_column",
    "nan_batch",
    "empty_batch_column",
    "integer_batches",
    "one_cell_batches",
    "unused_batch_category",
    "nan_labels",
    "empty_label_column",
    "duplicate_cell_names",
    "duplicate_gene_names",
    "cells_without_counts",
    "genes_without_counts",
    "few_cells",
    "no_genes",
    "missing_counts_layer",
    "counts_in_a_layer",
)


@st.composite
def raw_data(draw) -> tuple[ad.AnnData, dict[str, Any], int | None, frozenset[str]]:
    """A raw dataset with up to four defects, its parameters and a training batch size."""
    # One draw in eight is valid data (which must be processed), the others have defects.
    defects = draw(
        st.sets(st.sampled_from(DEFECTS), min_size=int(draw(st.integers(0, 7)) > 0), max_size=4)
    )
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_cells = draw(st.integers(0, 6)) if "few_cells" in defects else draw(st.integers(30, 80))
    n_genes = 0 if "no_genes" in defects else draw(st.integers(8, 40))
    n_batches = draw(st.integers(1, 4))
    values = rng.negative_binomial(2, 0.2, (n_cells, n_genes)).astype(np.float64)
    if "cells_without_counts" in defects and n_cells:
        values[rng.integers(0, n_cells, 3)] = 0
    if "genes_without_counts" in defects and n_genes:
        values[:, rng.integers(0, n_genes, 3)] = 0
    if "bad_values" in defects and values.size:
        values.flat[rng.integers(0, values.size, draw(st.integers(1, 3)))] = draw(
            st.sampled_from(BAD_VALUES)
        )
    counts = _stored(values, draw(st.sampled_from(DTYPES)) if "dtype" in defects else "float32")
    if "sparse_layout" in defects and counts.dtype.kind in "biufc" and counts.dtype != "float16":
        counts = draw(st.sampled_from([sparse.csr_matrix, sparse.csc_matrix]))(counts)

    cells = [f"c{i}" for i in range(n_cells)]
    if "duplicate_cell_names" in defects and n_cells > 1:
        cells[1] = cells[0]
    genes = [("MT-" if i < 2 else "G") + str(i) for i in range(n_genes)]
    if "duplicate_gene_names" in defects and n_genes > 1:
        genes[1] = genes[0]
    obs = draw(obs_columns(pd.Index(cells, dtype=object), n_batches, defects, rng))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = ad.AnnData(obs=obs, var=pd.DataFrame(index=pd.Index(genes, dtype=object)))
    counts_layer = None
    if "counts_in_a_layer" in defects:
        adata.layers["counts"], counts_layer = counts, "counts"
        adata.X = np.full((n_cells, n_genes), 0.5, dtype=np.float32)  # not counts
    else:
        adata.X = counts
    if "missing_counts_layer" in defects:
        counts_layer = "raw"

    parameters = {
        "counts_layer": counts_layer,
        "batch_key": "batch",
        "cell_type_key": draw(st.sampled_from(["cell_type", "cell_type", None])),
        "qc": {
            "min_genes_per_cell": draw(st.integers(0, 5)),
            "min_counts_per_cell": draw(st.integers(0, 20)),
            "max_pct_mito": draw(st.sampled_from([20.0, 100.0])),
            "min_cells_per_gene": draw(st.integers(0, 3)),
        },
        "hvg": {
            "n_top_genes": draw(st.integers(1, 40)),
            "flavor": draw(st.sampled_from(["seurat_v3", "seurat", "cell_ranger"])),
            "span": draw(st.sampled_from([0.01, 0.3, 1.0])),
            "subset": draw(st.booleans()),
        },
    }
    batch_size = draw(st.sampled_from([None, 2, 8, 16]))
    return adata, parameters, batch_size, frozenset(defects)


@st.composite
def obs_columns(draw, cells: pd.Index, n_batches: int, defects: set[str], rng) -> pd.DataFrame:
    """The batch and cell-type columns, with the defects drawn for them."""
    n_cells = len(cells)
    obs = pd.DataFrame(index=cells)
    batch = np.array([f"b{i % n_batches}" for i in range(n_cells)], dtype=object)
    if "one_cell_batches" in defects and n_cells:
        alone = draw(st.integers(1, n_cells))
        batch[:alone] = [f"solo{i}" for i in range(alone)]
    if "nan_batch" in defects and n_cells:
        batch[rng.integers(0, n_cells)] = np.nan
    if "empty_batch_column" in defects:
        batch[:] = np.nan
    if "integer_batches" in defects:
        batch = np.arange(n_cells) % n_batches
    if "unused_batch_category" in defects:
        batch = pd.Categorical(batch, categories=[*pd.unique(batch[pd.notna(batch)]), "none"])
    elif draw(st.booleans()):
        batch = pd.Categorical(batch)
    if "no_batch_column" not in defects:
        obs["batch"] = batch
    labels = np.array([f"t{i % 3}" for i in rng.permutation(n_cells)], dtype=object)
    if "nan_labels" in defects and n_cells:
        labels[rng.integers(0, n_cells, 2)] = np.nan
    if "empty_label_column" in defects:
        labels[:] = np.nan
    obs["cell_type"] = labels
    return obs


def _stored(values: np.ndarray, dtype: str) -> np.ndarray:
    """``values`` as the file would store them in ``dtype`` (casts that lose NaN included)."""
    with warnings.catch_warnings(), np.errstate(invalid="ignore", over="ignore"):
        warnings.simplefilter("ignore")
        if dtype == "U2":
            return np.nan_to_num(values).astype(int).astype(dtype)
        return values.astype(dtype)


@pytest.fixture(scope="module", autouse=True)
def one_numba_thread():
    """scanpy's numba kernels on data this small: threads cost more than they give (3x)."""
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(threads)


def process(raw: ad.AnnData, parameters: dict[str, Any], batch_size: int | None) -> ad.AnnData:
    params = DataProcessingParams.model_validate(parameters)
    validated = validate_raw_data(raw, params, batch_size)
    filtered, _, _ = filter_cells_and_genes(validated, params, batch_size)
    normalised = normalise_counts(filtered, params.normalisation.target_sum)
    return split_cells(select_highly_variable_genes(normalised, params), params)


@pytest.mark.filterwarnings("ignore")
@settings(
    max_examples=N_EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(raw_data())
def test_malformed_raw_data_is_processed_or_refused_by_the_project(case):
    raw, parameters, batch_size, defects = case
    try:
        model_input = process(raw, parameters, batch_size)
    except DataProcessingError as refusal:
        # What refused which defects, for --hypothesis-show-statistics.
        event(f"refused ({len(defects)} defects): {str(refusal).split(':')[0][:50]}")
        return
    event(f"processed ({len(defects)} defects)")
    assert set(model_input.obs["split"].cat.categories) == {"train", "val", "test"}
    assert model_input.obs["split"].notna().all()
    assert model_input.n_obs <= raw.n_obs

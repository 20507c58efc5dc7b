from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp
from sklearn.decomposition import PCA
from sklearn.metrics import silhouette_score

import omics_vae.data.simulate as simulate_module
from omics_vae.data.simulate import MITOCHONDRIAL_GENES, simulate_counts


@pytest.fixture(scope="module")
def adata():
    # 2,000 genes, as in the default: the QC thresholds in conf/base assume a panel this
    # size (fewer genes mean fewer detected genes per cell).
    return simulate_counts(n_cells=1500, n_genes=2000, n_batches=3, n_cell_types=5, seed=7)


@pytest.fixture(scope="module")
def qc_metrics(adata):
    counts = adata.X
    is_mito = adata.var_names.str.startswith("MT-")
    total = np.asarray(counts.sum(axis=1)).ravel()
    return pd.DataFrame(
        {
            "total_counts": total,
            "n_genes": np.diff(counts.indptr),
            "pct_mito": 100 * np.asarray(counts[:, is_mito].sum(axis=1)).ravel() / total,
            "low_quality": adata.obs["low_quality"].to_numpy(),
        },
        index=adata.obs_names,
    )


def passes_default_qc(qc_metrics: pd.DataFrame) -> pd.Series:
    """The thresholds of conf/base/parameters_data_processing.yml."""
    return (
        (qc_metrics["n_genes"] >= 200)
        & (qc_metrics["total_counts"] >= 500)
        & (qc_metrics["pct_mito"] < 20)
    )


def log_normalised_pcs(adata, n_components=20):
    normalised = adata.copy()
    sc.pp.normalize_total(normalised, target_sum=1e4)
    sc.pp.log1p(normalised)
    return PCA(n_components=n_components, random_state=0).fit_transform(normalised.X.toarray())


def test_shapes_and_matrix_type(adata):
    assert adata.shape == (1500, 2000)
    assert sp.issparse(adata.X)
    assert adata.X.format == "csr"
    assert adata.X.dtype == np.float32
    assert adata.X.has_canonical_format


def test_counts_are_non_negative_integers(adata):
    values = adata.X.data
    assert values.min() >= 1  # zeros are not stored
    np.testing.assert_array_equal(values, np.round(values))


def test_same_seed_gives_identical_data():
    first = simulate_counts(n_cells=300, n_genes=100, seed=3)
    second = simulate_counts(n_cells=300, n_genes=100, seed=3)

    assert (first.X != second.X).nnz == 0
    pd.testing.assert_frame_equal(first.obs, second.obs)
    assert list(first.var_names) == list(second.var_names)


def test_different_seed_gives_different_data():
    first = simulate_counts(n_cells=300, n_genes=100, seed=3)
    second = simulate_counts(n_cells=300, n_genes=100, seed=4)

    assert (first.X != second.X).nnz > 0
    assert not first.obs["cell_type"].equals(second.obs["cell_type"])


def test_result_does_not_depend_on_the_number_of_threads(monkeypatch):
    """Several chunks of cells are drawn in parallel; order and streams stay fixed."""
    n_cells = 2 * simulate_module._CELLS_PER_CHUNK + 17
    parallel = simulate_counts(n_cells=n_cells, n_genes=40, seed=1)
    monkeypatch.setattr(simulate_module, "_MAX_WORKERS", 1)
    serial = simulate_counts(n_cells=n_cells, n_genes=40, seed=1)

    assert (parallel.X != serial.X).nnz == 0


def test_obs_labels(adata):
    for key, prefix, n_labels in [("batch", "batch_", 3), ("cell_type", "type_", 5)]:
        column = adata.obs[key]
        assert isinstance(column.dtype, pd.CategoricalDtype)
        assert len(column.cat.categories) == n_labels
        assert all(label.startswith(prefix) for label in column.cat.categories)
    assert list(adata.obs["batch"].cat.categories) == ["batch_0", "batch_1", "batch_2"]
    assert list(adata.obs["cell_type"].cat.categories)[:3] == ["type_A", "type_B", "type_C"]
    assert adata.obs["low_quality"].dtype == bool
    assert adata.obs_names.is_unique


def test_many_cell_types_get_distinct_labels():
    labels = simulate_counts(n_cells=400, n_genes=200, n_cell_types=28).obs["cell_type"]
    assert list(labels.cat.categories[-3:]) == ["type_Z", "type_AA", "type_AB"]


def test_gene_names(adata):
    mito = [name for name in adata.var_names if name.startswith("MT-")]
    assert mito == list(MITOCHONDRIAL_GENES)
    assert adata.var_names[0] == "GENE0001"
    assert adata.var_names.is_unique


def test_arguments_are_recorded(adata):
    assert adata.uns["simulation"]["seed"] == 7
    assert adata.uns["simulation"]["n_cells"] == 1500


def test_low_quality_cells_have_few_counts_and_high_mito_fraction(qc_metrics):
    low = qc_metrics[qc_metrics["low_quality"]]
    healthy = qc_metrics[~qc_metrics["low_quality"]]

    assert len(low) == round(0.03 * len(qc_metrics))
    assert (low["pct_mito"] > 20).mean() > 0.95
    assert low["total_counts"].max() < 500
    assert healthy["pct_mito"].median() < 8
    assert healthy["total_counts"].median() > 1000


def test_default_qc_keeps_healthy_cells_and_removes_low_quality_ones(qc_metrics):
    passed = passes_default_qc(qc_metrics)
    assert passed[~qc_metrics["low_quality"]].mean() > 0.98
    assert not passed[qc_metrics["low_quality"]].any()


def test_batches_differ_in_library_size(adata, qc_metrics):
    medians = qc_metrics["total_counts"].groupby(adata.obs["batch"], observed=True).median()
    assert medians.max() / medians.min() > 1.15


def test_cell_types_separate_and_batches_shift_in_pca(adata, qc_metrics):
    healthy = adata[passes_default_qc(qc_metrics).to_numpy()]
    pcs = log_normalised_pcs(healthy)

    assert silhouette_score(pcs, healthy.obs["cell_type"]) > 0.2
    largest_type = healthy.obs["cell_type"].value_counts().index[0]
    one_type = (healthy.obs["cell_type"] == largest_type).to_numpy()
    # Within one cell type, batch is the main remaining structure.
    assert silhouette_score(pcs[one_type], healthy.obs["batch"][one_type]) > 0.05


def test_seurat_v3_highly_variable_genes(adata):
    pytest.importorskip("skmisc", reason="scanpy's seurat_v3 flavour needs scikit-misc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = sc.pp.highly_variable_genes(
            adata, n_top_genes=200, flavor="seurat_v3", batch_key="batch", inplace=False
        )
    assert result["highly_variable"].sum() == 200


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"n_cells": 0}, "n_cells must be at least 1"),
        ({"n_batches": 0}, "n_batches must be at least 1"),
        ({"n_genes": 10, "n_cell_types": 12}, "too few non-mitochondrial genes"),
        ({"low_quality_fraction": 1.0}, r"low_quality_fraction must be in \[0, 1\)"),
    ],
)
def test_bad_arguments_are_refused(arguments, message):
    with pytest.raises(ValueError, match=message):
        simulate_counts(**arguments)


def test_no_low_quality_cells_when_asked():
    adata = simulate_counts(n_cells=200, n_genes=100, low_quality_fraction=0.0)
    assert not adata.obs["low_quality"].any()

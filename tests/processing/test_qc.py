"""Quality control: the cell and gene filters, their summary and their refusals."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from omics_vae.processing.annotations import RECORD_KEY
from omics_vae.processing.errors import LOCAL_PARAMETERS_FILE, DataProcessingError
from omics_vae.processing.qc import (
    QC_METRICS,
    cell_qc_metrics,
    cells_per_gene,
    filter_cells_and_genes,
)
from omics_vae.processing.validation import validate_raw_data
from tests.processing.simulated_counts import as_params

LOGGER = "omics_vae.processing"


class TestFilterCellsAndGenes:
    def test_removes_low_quality_cells_and_undetected_genes(
        self, validated, parameters, simulation
    ):
        filtered, metrics, _ = filter_cells_and_genes(validated, as_params(parameters))

        n_bad_per_batch = (
            simulation["low_count_cells_per_batch"] + simulation["high_mito_cells_per_batch"]
        )
        assert filtered.n_obs == validated.n_obs - 3 * n_bad_per_batch
        assert filtered.n_vars == validated.n_vars - simulation["n_empty_genes"]
        assert filtered.obs["n_genes_by_counts"].min() >= 20
        assert filtered.obs["total_counts"].min() >= 50
        assert filtered.obs["pct_counts_mt"].max() <= 20.0
        assert filtered.var["mt"].sum() == 5
        assert filtered.uns[RECORD_KEY]["n_cells_after_qc"] == filtered.n_obs
        assert metrics.shape[0] == validated.n_obs
        assert metrics["passed_qc"].sum() == filtered.n_obs

    def test_summary_counts_each_removed_cell_once_per_batch(
        self, validated, parameters, simulation
    ):
        _, _, summary = filter_cells_and_genes(validated, as_params(parameters))

        assert list(summary["batch"]) == ["batch0", "batch1", "batch2", "total"]
        per_batch = summary.set_index("batch").loc[["batch0", "batch1", "batch2"]]
        assert (per_batch["n_cells_before"] == 100).all()
        assert (per_batch["removed_min_genes"] == simulation["low_count_cells_per_batch"]).all()
        assert (per_batch["removed_pct_mito"] == simulation["high_mito_cells_per_batch"]).all()
        removed = summary[["removed_min_genes", "removed_min_counts", "removed_pct_mito"]]
        pd.testing.assert_series_equal(
            summary["n_cells_before"] - removed.sum(axis=1),
            summary["n_cells_after"],
            check_names=False,
        )
        assert (summary["removed_min_cells"] == simulation["n_empty_genes"]).all()

    def test_cells_failing_a_later_filter_only_are_counted_there(
        self, validated, parameters, simulation
    ):
        parameters["qc"]["min_genes_per_cell"] = 0

        _, _, summary = filter_cells_and_genes(validated, as_params(parameters))

        total = summary.set_index("batch").loc["total"]
        assert total["removed_min_genes"] == 0
        assert total["removed_min_counts"] == 3 * simulation["low_count_cells_per_batch"]

    def test_does_not_modify_its_input(self, validated, parameters):
        before = validated.X.copy()
        columns = list(validated.obs.columns)

        filter_cells_and_genes(validated, as_params(parameters))

        assert validated.n_obs == 300
        assert list(validated.obs.columns) == columns
        assert "mt" not in validated.var
        assert (before != validated.X).nnz == 0

    def test_removing_every_cell_names_the_thresholds(self, validated, parameters):
        parameters["qc"]["min_genes_per_cell"] = 10_000

        with pytest.raises(DataProcessingError, match="every cell") as error:
            filter_cells_and_genes(validated, as_params(parameters))

        message = str(error.value)
        assert "qc.min_genes_per_cell = 10000 removes 300" in message
        assert LOCAL_PARAMETERS_FILE in message

    def test_a_batch_that_disappears_is_named(self, raw_counts, parameters):
        in_batch2 = (raw_counts.obs["batch"] == "batch2").to_numpy()
        counts = raw_counts.X.toarray()
        counts[in_batch2] = np.floor(counts[in_batch2] / 20)
        raw_counts.X = sparse.csr_matrix(counts)
        validated = validate_raw_data(raw_counts, as_params(parameters))

        with pytest.raises(DataProcessingError) as error:
            filter_cells_and_genes(validated, as_params(parameters))

        message = str(error.value)
        assert "every cell of batch 'batch2'" in message
        assert "obs['batch'], 100 cells" in message
        assert "qc.min_counts_per_cell = 50" in message
        assert "data_processing.qc" in message

    def test_removing_every_gene_names_the_key(self, validated, parameters):
        parameters["qc"]["min_cells_per_gene"] = 1_000

        with pytest.raises(DataProcessingError, match=r"qc\.min_cells_per_gene = 1000"):
            filter_cells_and_genes(validated, as_params(parameters))

    def test_warns_when_no_gene_matches_the_mito_prefix(self, validated, parameters, caplog):
        parameters["qc"]["mito_prefix"] = "mt-"

        with caplog.at_level(logging.WARNING, logger=LOGGER):
            filtered, _, _ = filter_cells_and_genes(validated, as_params(parameters))

        assert "data_processing.qc.mito_prefix" in caplog.text
        assert (filtered.obs["pct_counts_mt"] == 0).all()


def test_cell_and_gene_metrics_are_scanpys():
    import anndata as ad
    import scanpy as sc

    rng = np.random.default_rng(0)
    counts = rng.negative_binomial(1, 0.6, size=(40, 30)).astype(np.float32)
    counts[3] = 0  # a cell without counts: 0 % mitochondrial, not NaN
    adata = ad.AnnData(sparse.csr_matrix(counts))
    mito = np.zeros(30, dtype=bool)
    mito[:4] = True
    adata.var["mt"] = mito
    expected, _ = sc.pp.calculate_qc_metrics(
        adata, qc_vars=["mt"], percent_top=None, log1p=False, inplace=False
    )

    metrics = cell_qc_metrics(adata.X, mito)

    assert set(metrics) == set(QC_METRICS)
    np.testing.assert_array_equal(metrics["n_genes_by_counts"], expected["n_genes_by_counts"])
    np.testing.assert_allclose(metrics["total_counts"], expected["total_counts"], rtol=1e-6)
    np.testing.assert_allclose(
        metrics["pct_counts_mt"], expected["pct_counts_mt"].fillna(0.0), rtol=1e-6
    )
    assert metrics["pct_counts_mt"][3] == 0
    _, expected_cells = sc.pp.filter_genes(adata, min_cells=1, inplace=False)
    np.testing.assert_array_equal(cells_per_gene(adata.X), expected_cells)
    np.testing.assert_array_equal(cells_per_gene(counts), expected_cells)

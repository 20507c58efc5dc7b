"""Tests of the data-processing nodes, one node at a time, on tiny simulated counts."""

from __future__ import annotations

import io
import logging
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from matplotlib.figure import Figure
from scipy import sparse

from omics_vae.datasets import H5ADDataset
from omics_vae.pipelines.data_processing import nodes
from omics_vae.pipelines.data_processing.nodes import (
    LOCAL_PARAMETERS_FILE,
    PARAMETERS_FILE,
    RECORD_KEY,
    SPLITS,
    DataProcessingError,
    filter_cells_and_genes,
    normalise_counts,
    plot_qc_metrics,
    select_highly_variable_genes,
    split_cells,
    validate_raw_data,
)

NODES_LOGGER = "omics_vae.pipelines.data_processing.nodes"
# Far past the first 100,000 values in any storage order, where a sampled check missed it.
BAD_CELL, BAD_GENE = 3456, 321
LAYOUTS = {
    "dense": np.asarray,
    "csr": sparse.csr_matrix,
    "csc": sparse.csc_matrix,
}


def log_normalised(adata: ad.AnnData) -> ad.AnnData:
    """The same cells with log-normalised X and the raw counts in layers['counts']."""
    lognorm = adata.copy()
    lognorm.layers["counts"] = lognorm.X.copy()
    sc.pp.normalize_total(lognorm, target_sum=1e4)
    sc.pp.log1p(lognorm)
    return lognorm


class TestValidateRawData:
    def test_returns_float32_csr_counts_without_copying(self, raw_counts, parameters):
        validated = validate_raw_data(raw_counts, parameters)

        assert isinstance(validated.X, sparse.csr_matrix)
        assert validated.X.dtype == np.float32
        # The input already is float32 CSR: the matrix is shared, not copied.
        assert np.shares_memory(validated.X.data, raw_counts.X.data)
        assert validated.obs["batch"].dtype == "category"
        assert validated.uns[RECORD_KEY]["n_cells_raw"] == raw_counts.n_obs
        assert validated.uns[RECORD_KEY]["params"]["batch_key"] == "batch"

    def test_reads_integer_counts_from_a_dense_layer(self, raw_counts, parameters):
        lognorm = log_normalised(raw_counts)
        lognorm.layers["counts"] = lognorm.layers["counts"].toarray().astype(np.int64)
        parameters["counts_layer"] = "counts"

        validated = validate_raw_data(lognorm, parameters)

        assert isinstance(validated.X, sparse.csr_matrix)
        assert validated.X.dtype == np.float32
        np.testing.assert_array_equal(validated.X.toarray(), raw_counts.X.toarray())
        assert not validated.layers

    def test_cell_type_key_may_be_null(self, raw_counts, parameters):
        del raw_counts.obs["cell_type"]
        parameters["cell_type_key"] = None

        assert validate_raw_data(raw_counts, parameters).n_obs == raw_counts.n_obs

    def test_missing_batch_key_names_key_columns_and_parameter(self, raw_counts, parameters):
        parameters["batch_key"] = "donor"

        with pytest.raises(DataProcessingError) as error:
            validate_raw_data(raw_counts, parameters)

        message = str(error.value)
        assert "'donor'" in message
        assert "data_processing.batch_key" in message
        assert "['batch', 'cell_type']" in message
        assert PARAMETERS_FILE in message

    def test_missing_cell_type_key_names_key_and_null_option(self, raw_counts, parameters):
        parameters["cell_type_key"] = "celltype"

        with pytest.raises(DataProcessingError, match=r"data_processing\.cell_type_key") as error:
            validate_raw_data(raw_counts, parameters)

        assert "'celltype'" in str(error.value)
        assert "null" in str(error.value)

    def test_batch_with_missing_values_is_refused(self, raw_counts, parameters):
        batch = raw_counts.obs["batch"].astype(object)
        batch.iloc[:5] = None
        raw_counts.obs["batch"] = batch

        with pytest.raises(DataProcessingError, match=r"obs\['batch'\].* 5 cells without"):
            validate_raw_data(raw_counts, parameters)

    def test_missing_counts_layer_lists_layers(self, raw_counts, parameters):
        raw_counts.layers["raw"] = raw_counts.X.copy()
        parameters["counts_layer"] = "counts"

        with pytest.raises(DataProcessingError) as error:
            validate_raw_data(raw_counts, parameters)

        message = str(error.value)
        assert "layers['counts']" in message
        assert "data_processing.counts_layer" in message
        assert "['raw']" in message

    def test_log_normalised_counts_are_refused_naming_the_counts_layer(
        self, raw_counts, parameters
    ):
        with pytest.raises(DataProcessingError) as error:
            validate_raw_data(log_normalised(raw_counts), parameters)

        message = str(error.value)
        assert "adata.X" in message
        assert "non-integer values" in message
        assert "layers['counts'] holds integers: set data_processing.counts_layer: counts" in (
            message
        )

    def test_non_integer_layer_suggests_reading_x(self, raw_counts, parameters):
        raw_counts.layers["lognorm"] = log_normalised(raw_counts).X
        parameters["counts_layer"] = "lognorm"

        with pytest.raises(DataProcessingError, match="counts_layer: null"):
            validate_raw_data(raw_counts, parameters)

    def test_negative_values_are_refused(self, raw_counts, parameters):
        dense = raw_counts.X.toarray()
        raw_counts.X = dense - dense.mean(axis=0)

        with pytest.raises(DataProcessingError, match="negative values") as error:
            validate_raw_data(raw_counts, parameters)

        assert "No layer holds raw counts" in str(error.value)

    def test_duplicate_gene_names_are_made_unique_with_a_warning(
        self, raw_counts, parameters, caplog
    ):
        names = raw_counts.var_names.to_list()
        names[10] = names[11] = "GENE_DUP"
        raw_counts.var_names = names

        with caplog.at_level(logging.WARNING, logger=NODES_LOGGER):
            validated = validate_raw_data(raw_counts, parameters)

        assert validated.var_names.is_unique
        assert "GENE_DUP" in caplog.text
        # The caller's object keeps its names.
        assert raw_counts.var_names[10] == raw_counts.var_names[11] == "GENE_DUP"

    def test_empty_cells_and_genes_are_logged(self, raw_counts, parameters, simulation, caplog):
        counts = raw_counts.X.toarray()
        counts[0] = 0
        raw_counts.X = sparse.csr_matrix(counts)

        with caplog.at_level(logging.INFO, logger=NODES_LOGGER):
            validate_raw_data(raw_counts, parameters)

        assert f"1 cells and {simulation['n_empty_genes']} genes have no counts" in caplog.text

    def test_invalid_parameters_name_the_key(self, raw_counts, parameters):
        parameters["qc"]["min_gene_per_cell"] = 10

        with pytest.raises(ValueError, match=r"data_processing\.qc\.min_gene_per_cell"):
            validate_raw_data(raw_counts, parameters)


@pytest.fixture
def large_raw_counts(make_raw_counts) -> ad.AnnData:
    """4,000 cells x 500 genes: 2,000,000 values, 20 times what a sampled check read."""
    return make_raw_counts(n_cells=4000, n_genes=500)


def with_values(adata: ad.AnnData, layout: str, values: dict[tuple[int, int], float]):
    """A copy of ``adata`` with X in ``layout`` and the given values set at (cell, gene)."""
    changed = adata.copy()
    dense = changed.X.toarray()
    for (cell, gene), value in values.items():
        dense[cell, gene] = value
    changed.X = LAYOUTS[layout](dense)
    return changed


def save_and_open_backed(adata: ad.AnnData, path) -> ad.AnnData:
    """``adata`` as the catalog gives it with ``load_args: {backed: r}``."""
    dataset = H5ADDataset(filepath=str(path), load_args={"backed": "r"})
    dataset.save(adata)
    return dataset.load()


class TestValidateRawDataReadsEveryValue:
    @pytest.mark.parametrize("layout", LAYOUTS)
    @pytest.mark.parametrize(
        ("value", "described"),
        [
            (0.5, "1 non-integer value (e.g. 0.5 at"),
            (-1.0, "1 negative value (e.g. -1.0 at"),
            (np.nan, "1 NaN or infinite value (e.g. nan at"),
            (np.inf, "1 NaN or infinite value (e.g. inf at"),
        ],
    )
    def test_one_bad_value_far_into_the_matrix_is_refused_naming_cell_and_gene(
        self, large_raw_counts, parameters, layout, value, described
    ):
        raw = with_values(large_raw_counts, layout, {(BAD_CELL, BAD_GENE): value})

        with pytest.raises(DataProcessingError) as error:
            validate_raw_data(raw, parameters)

        message = str(error.value)
        assert described in message
        assert f"cell 'cell{BAD_CELL}', gene 'GENE{BAD_GENE}'" in message
        assert "adata.X of catalog entry raw_counts" in message
        assert "(data_processing.counts_layer: null)" in message
        assert LOCAL_PARAMETERS_FILE in message

    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_valid_counts_in_any_layout_pass_unchanged(self, large_raw_counts, parameters, layout):
        expected = large_raw_counts.X.toarray()
        raw = with_values(large_raw_counts, layout, {})

        validated = validate_raw_data(raw, parameters)

        np.testing.assert_array_equal(validated.X.toarray(), expected)

    def test_reports_nan_then_negative_then_non_integer_values_with_their_number(
        self, raw_counts, parameters
    ):
        bad = {(5, 1): 0.5, (6, 2): 2.5, (7, 3): -2.0, (8, 4): -0.5, (9, 5): np.nan}

        with pytest.raises(DataProcessingError, match=r"1 NaN or infinite value \(e\.g\. nan"):
            validate_raw_data(with_values(raw_counts, "csr", bad), parameters)
        del bad[(9, 5)]
        with pytest.raises(DataProcessingError, match=r"2 negative values \(e\.g\. -2\.0"):
            validate_raw_data(with_values(raw_counts, "csr", bad), parameters)
        del bad[(7, 3)], bad[(8, 4)]
        with pytest.raises(DataProcessingError, match=r"2 non-integer values \(e\.g\. 0\.5"):
            validate_raw_data(with_values(raw_counts, "csr", bad), parameters)

    @pytest.mark.parametrize("layout", ["dense", "csr"])
    def test_bad_values_are_counted_and_located_across_blocks(
        self, raw_counts, parameters, layout, monkeypatch
    ):
        # Blocks of a few rows or a few hundred stored values: every bad value below
        # lies in another block, and the first one not at the start of its block.
        monkeypatch.setattr(nodes, "_COUNTS_CHUNK_VALUES", 997)
        bad = {(123, 45): 0.25, (200, 7): 1.5, (299, 199): 7.75}

        with pytest.raises(DataProcessingError) as error:
            validate_raw_data(with_values(raw_counts, layout, bad), parameters)

        assert "3 non-integer values (e.g. 0.25 at cell 'cell123', gene 'GENE45')" in str(
            error.value
        )

    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_one_bad_value_in_a_backed_file_is_refused(
        self, large_raw_counts, parameters, layout, tmp_path
    ):
        raw = with_values(large_raw_counts, layout, {(BAD_CELL, BAD_GENE): 0.5})
        backed = save_and_open_backed(raw, tmp_path / "raw.h5ad")

        with pytest.raises(
            DataProcessingError,
            match=rf"1 non-integer value \(e\.g\. 0\.5 at cell 'cell{BAD_CELL}', gene",
        ):
            validate_raw_data(backed, parameters)

    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_valid_counts_in_a_backed_file_pass(self, raw_counts, parameters, layout, tmp_path):
        expected = raw_counts.X.toarray()
        backed = save_and_open_backed(with_values(raw_counts, layout, {}), tmp_path / "raw.h5ad")

        validated = validate_raw_data(backed, parameters)

        np.testing.assert_array_equal(validated.X.toarray(), expected)

    def test_the_fix_names_the_layer_that_holds_counts_in_the_local_settings(
        self, large_raw_counts, parameters
    ):
        counts = large_raw_counts.X.copy()
        raw = with_values(large_raw_counts, "csr", {(BAD_CELL, BAD_GENE): -3.0})
        raw.layers["raw"] = counts
        raw.layers["standardised"] = raw.X.copy()

        with pytest.raises(DataProcessingError) as error:
            validate_raw_data(raw, parameters)

        message = str(error.value)
        assert (
            "layers['raw'] holds integers: set data_processing.counts_layer: raw "
            f"(in {LOCAL_PARAMETERS_FILE})."
        ) in message
        assert "layers['standardised']" not in message


class TestFilterCellsAndGenes:
    def test_removes_low_quality_cells_and_undetected_genes(
        self, validated, parameters, simulation
    ):
        filtered, metrics, _ = filter_cells_and_genes(validated, parameters)

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
        _, _, summary = filter_cells_and_genes(validated, parameters)

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

        _, _, summary = filter_cells_and_genes(validated, parameters)

        total = summary.set_index("batch").loc["total"]
        assert total["removed_min_genes"] == 0
        assert total["removed_min_counts"] == 3 * simulation["low_count_cells_per_batch"]

    def test_does_not_modify_its_input(self, validated, parameters):
        before = validated.X.copy()
        columns = list(validated.obs.columns)

        filter_cells_and_genes(validated, parameters)

        assert validated.n_obs == 300
        assert list(validated.obs.columns) == columns
        assert "mt" not in validated.var
        assert (before != validated.X).nnz == 0

    def test_removing_every_cell_names_the_thresholds(self, validated, parameters):
        parameters["qc"]["min_genes_per_cell"] = 10_000

        with pytest.raises(DataProcessingError, match="every cell") as error:
            filter_cells_and_genes(validated, parameters)

        message = str(error.value)
        assert "qc.min_genes_per_cell = 10000 removes 300" in message
        assert PARAMETERS_FILE in message

    def test_a_batch_that_disappears_is_named(self, raw_counts, parameters):
        in_batch2 = (raw_counts.obs["batch"] == "batch2").to_numpy()
        counts = raw_counts.X.toarray()
        counts[in_batch2] = np.floor(counts[in_batch2] / 20)
        raw_counts.X = sparse.csr_matrix(counts)
        validated = validate_raw_data(raw_counts, parameters)

        with pytest.raises(DataProcessingError) as error:
            filter_cells_and_genes(validated, parameters)

        message = str(error.value)
        assert "every cell of batch 'batch2'" in message
        assert "obs['batch'], 100 cells" in message
        assert "qc.min_counts_per_cell = 50" in message
        assert "data_processing.qc" in message

    def test_removing_every_gene_names_the_key(self, validated, parameters):
        parameters["qc"]["min_cells_per_gene"] = 1_000

        with pytest.raises(DataProcessingError, match=r"qc\.min_cells_per_gene = 1000"):
            filter_cells_and_genes(validated, parameters)

    def test_warns_when_no_gene_matches_the_mito_prefix(self, validated, parameters, caplog):
        parameters["qc"]["mito_prefix"] = "mt-"

        with caplog.at_level(logging.WARNING, logger=NODES_LOGGER):
            filtered, _, _ = filter_cells_and_genes(validated, parameters)

        assert "data_processing.qc.mito_prefix" in caplog.text
        assert (filtered.obs["pct_counts_mt"] == 0).all()


class TestNormaliseCounts:
    def test_keeps_counts_and_log_normalises(self, filtered, parameters):
        before = filtered.X.copy()

        normalised = normalise_counts(filtered, parameters)

        assert normalised.layers["counts"] is filtered.X
        totals = np.expm1(normalised.X.toarray()).sum(axis=1)
        np.testing.assert_allclose(totals, 10_000.0, rtol=1e-4)
        assert "log1p" in normalised.uns
        # The caller's counts are untouched.
        assert (before != filtered.X).nnz == 0
        assert "counts" not in filtered.layers


class TestSelectHighlyVariableGenes:
    def test_flags_n_top_genes(self, normalised, parameters):
        annotated = select_highly_variable_genes(normalised, parameters)

        assert annotated.var["highly_variable"].sum() == 50
        assert annotated.n_vars == normalised.n_vars
        assert annotated.uns[RECORD_KEY]["n_highly_variable_genes"] == 50
        assert "highly_variable" not in normalised.var

    def test_subset_keeps_only_highly_variable_genes(self, normalised, parameters):
        parameters["hvg"]["subset"] = True

        annotated = select_highly_variable_genes(normalised, parameters)

        assert annotated.n_vars == 50
        assert annotated.layers["counts"].shape == (normalised.n_obs, 50)
        assert normalised.n_vars == 198

    def test_caps_n_top_genes_at_the_number_of_genes(self, normalised, parameters, caplog):
        parameters["hvg"]["n_top_genes"] = 5_000

        with caplog.at_level(logging.WARNING, logger=NODES_LOGGER):
            annotated = select_highly_variable_genes(normalised, parameters)

        assert "n_top_genes = 5000 exceeds the 198 genes" in caplog.text
        assert annotated.var["highly_variable"].all()

    def test_seurat_v3_reads_the_raw_counts(self, normalised, parameters):
        annotated = select_highly_variable_genes(normalised, parameters)

        assert annotated.uns["hvg"]["flavor"] == "seurat_v3"
        assert annotated.uns[RECORD_KEY]["hvg_span"] == 0.3
        # seurat_v3 statistics are of the counts, not of the log-normalised values.
        np.testing.assert_allclose(
            annotated.var["means"],
            np.asarray(normalised.layers["counts"].mean(axis=0)).ravel(),
            rtol=1e-5,
        )
        assert annotated.var["highly_variable_nbatches"].max() == 3

    def test_widens_the_loess_span_when_the_fit_fails(self, normalised, parameters, caplog):
        # Far too narrow for 198 genes: skmisc's LOESS refuses it.
        parameters["hvg"]["span"] = 0.01

        with caplog.at_level(logging.WARNING, logger=NODES_LOGGER):
            annotated = select_highly_variable_genes(normalised, parameters)

        assert annotated.uns[RECORD_KEY]["hvg_span"] == 0.5
        assert annotated.var["highly_variable"].sum() == 50
        assert "data_processing.hvg.span = 0.01" in caplog.text
        assert "Set data_processing.hvg.span: 0.5" in caplog.text

    def test_dispersion_flavor_reads_log_normalised_values(self, normalised, parameters):
        parameters["hvg"]["flavor"] = "seurat"

        annotated = select_highly_variable_genes(normalised, parameters)

        assert annotated.var["highly_variable"].sum() == 50
        assert "dispersions_norm" in annotated.var
        assert annotated.uns[RECORD_KEY]["hvg_span"] is None


class TestSplitCells:
    def test_assigns_train_val_test_in_the_configured_fractions(self, annotated, parameters):
        model_input = split_cells(annotated, parameters)

        split = model_input.obs["split"]
        assert isinstance(split.dtype, pd.CategoricalDtype)
        assert tuple(split.cat.categories) == SPLITS
        fractions = split.value_counts(normalize=True)
        assert fractions["train"] == pytest.approx(0.8, abs=0.02)
        assert fractions["val"] == pytest.approx(0.1, abs=0.02)
        assert fractions["test"] == pytest.approx(0.1, abs=0.02)
        assert "split" not in annotated.obs

    def test_is_reproducible_for_a_seed(self, annotated, parameters):
        first = split_cells(annotated, parameters).obs["split"]
        again = split_cells(annotated, parameters).obs["split"]
        parameters["split"]["seed"] = 1
        other = split_cells(annotated, parameters).obs["split"]

        pd.testing.assert_series_equal(first, again)
        assert not first.equals(other)

    def test_stratifies_by_batch_and_cell_type(self, annotated, parameters, caplog):
        with caplog.at_level(logging.INFO, logger=NODES_LOGGER):
            model_input = split_cells(annotated, parameters)

        assert "stratified by batch x cell_type" in caplog.text
        obs = model_input.obs
        counts = pd.crosstab([obs["batch"], obs["cell_type"]], obs["split"])
        expected = counts.sum(axis=1).to_numpy()[:, None] * np.array([0.8, 0.1, 0.1])
        # Stratified: every group is within two cells of its share in each split.
        assert np.abs(counts[list(SPLITS)].to_numpy() - expected).max() <= 2

    def test_falls_back_to_batch_without_cell_types(self, annotated, parameters, caplog):
        parameters["cell_type_key"] = None

        with caplog.at_level(logging.INFO, logger=NODES_LOGGER):
            model_input = split_cells(annotated, parameters)

        assert "stratified by batch." in caplog.text
        per_batch = pd.crosstab(model_input.obs["batch"], model_input.obs["split"])
        assert (per_batch["val"] >= 8).all()

    def test_falls_back_to_no_stratification_for_a_lone_cell(self, annotated, parameters, caplog):
        batch = annotated.obs["batch"].astype(str).to_numpy()
        batch[0] = "lonely"
        annotated.obs["batch"] = pd.Categorical(batch)

        with caplog.at_level(logging.INFO, logger=NODES_LOGGER):
            model_input = split_cells(annotated, parameters)

        assert "stratified by nothing" in caplog.text
        assert model_input.obs["split"].notna().all()

    def test_records_lineage_and_writes_to_h5ad(self, annotated, parameters, tmp_path):
        model_input = split_cells(annotated, parameters)
        model_input.write_h5ad(tmp_path / "model_input.h5ad")

        reread = ad.read_h5ad(tmp_path / "model_input.h5ad")
        record = reread.uns[RECORD_KEY]
        assert record["params"]["hvg"]["n_top_genes"] == 50
        assert record["params"]["counts_layer"] is None
        assert record["n_cells_raw"] == 300
        assert record["n_cells_after_qc"] == reread.n_obs
        assert sum(record["n_cells_per_split"].values()) == reread.n_obs
        assert tuple(reread.obs["split"].cat.categories) == SPLITS
        assert reread.layers["counts"].dtype == np.float32


class TestPlotQCMetrics:
    def test_draws_three_metrics_before_and_after(self, validated, parameters):
        _, metrics, _ = filter_cells_and_genes(validated, parameters)

        figure = plot_qc_metrics(metrics, parameters)

        assert isinstance(figure, Figure)
        axes = figure.get_axes()
        assert len(axes) == 6
        titles = [ax.get_title() for ax in axes]
        assert titles[0] == "Total counts per cell, before QC (300 cells)"
        assert titles[3] == f"Total counts per cell, after QC ({metrics['passed_qc'].sum()} cells)"
        assert all(ax.get_ylabel() and ax.get_xlabel() for ax in axes)
        assert [t.get_text() for t in axes[0].get_xticklabels()] == ["batch0", "batch1", "batch2"]
        png = io.BytesIO()
        figure.savefig(png, format="png")
        assert png.getvalue().startswith(b"\x89PNG")


def test_every_node_accepts_larger_data_with_other_names(make_raw_counts) -> None:
    """The nodes chain on data whose keys are configured, not hard-coded."""
    raw = make_raw_counts(n_cells=400, n_batches=2, seed=3)
    raw.obs = raw.obs.rename(columns={"batch": "chemistry", "cell_type": "label"})
    parameters: dict[str, Any] = {
        "batch_key": "chemistry",
        "cell_type_key": "label",
        "qc": {"min_genes_per_cell": 20, "min_counts_per_cell": 50},
        "hvg": {"n_top_genes": 40, "flavor": "cell_ranger", "subset": True},
    }

    adata = validate_raw_data(raw, parameters)
    adata, _, summary = filter_cells_and_genes(adata, parameters)
    adata = split_cells(
        select_highly_variable_genes(normalise_counts(adata, parameters), parameters),
        parameters,
    )

    assert list(summary["batch"]) == ["batch0", "batch1", "total"]
    assert adata.n_vars == 40
    assert set(adata.obs["split"]) == set(SPLITS)

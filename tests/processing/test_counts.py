"""The raw-counts check reads every value, in blocks, whatever the matrix layout."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
from scipy import sparse

from omics_vae.datasets import H5ADDataset
from omics_vae.processing import counts
from omics_vae.processing.errors import LOCAL_PARAMETERS_FILE, DataProcessingError
from omics_vae.processing.validation import validate_raw_data
from tests.printed_fixes import apply, printed_settings
from tests.processing.simulated_counts import as_params

# Far past the first 100,000 values in any storage order, where a sampled check missed it.
BAD_CELL, BAD_GENE = 3456, 321
LAYOUTS = {
    "dense": np.asarray,
    "csr": sparse.csr_matrix,
    "csc": sparse.csc_matrix,
}


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
            validate_raw_data(raw, as_params(parameters))

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

        validated = validate_raw_data(raw, as_params(parameters))

        np.testing.assert_array_equal(validated.X.toarray(), expected)

    def test_reports_nan_then_negative_then_non_integer_values_with_their_number(
        self, raw_counts, parameters
    ):
        bad = {(5, 1): 0.5, (6, 2): 2.5, (7, 3): -2.0, (8, 4): -0.5, (9, 5): np.nan}

        with pytest.raises(DataProcessingError, match=r"1 NaN or infinite value \(e\.g\. nan"):
            validate_raw_data(with_values(raw_counts, "csr", bad), as_params(parameters))
        del bad[(9, 5)]
        with pytest.raises(DataProcessingError, match=r"2 negative values \(e\.g\. -2\.0"):
            validate_raw_data(with_values(raw_counts, "csr", bad), as_params(parameters))
        del bad[(7, 3)], bad[(8, 4)]
        with pytest.raises(DataProcessingError, match=r"2 non-integer values \(e\.g\. 0\.5"):
            validate_raw_data(with_values(raw_counts, "csr", bad), as_params(parameters))

    @pytest.mark.parametrize("layout", ["dense", "csr"])
    def test_bad_values_are_counted_and_located_across_blocks(
        self, raw_counts, parameters, layout, monkeypatch
    ):
        # Blocks of a few rows or a few hundred stored values: every bad value below
        # lies in another block, and the first one not at the start of its block.
        monkeypatch.setattr(counts, "_COUNTS_CHUNK_VALUES", 997)
        bad = {(123, 45): 0.25, (200, 7): 1.5, (299, 199): 7.75}

        with pytest.raises(DataProcessingError) as error:
            validate_raw_data(with_values(raw_counts, layout, bad), as_params(parameters))

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
            validate_raw_data(backed, as_params(parameters))

    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_valid_counts_in_a_backed_file_pass(self, raw_counts, parameters, layout, tmp_path):
        expected = raw_counts.X.toarray()
        backed = save_and_open_backed(with_values(raw_counts, layout, {}), tmp_path / "raw.h5ad")

        validated = validate_raw_data(backed, as_params(parameters))

        np.testing.assert_array_equal(validated.X.toarray(), expected)

    def test_the_fix_names_the_layer_that_holds_counts_in_the_local_settings(
        self, large_raw_counts, parameters
    ):
        counts = large_raw_counts.X.copy()
        raw = with_values(large_raw_counts, "csr", {(BAD_CELL, BAD_GENE): -3.0})
        raw.layers["raw"] = counts
        raw.layers["standardised"] = raw.X.copy()

        with pytest.raises(DataProcessingError) as error:
            validate_raw_data(raw, as_params(parameters))

        message = str(error.value)
        assert (
            "layers['raw'] holds integers: set data_processing.counts_layer: raw "
            f"(in {LOCAL_PARAMETERS_FILE})."
        ) in message
        assert "layers['standardised']" not in message


class TestCountsStoredAsNumbers:
    @pytest.mark.parametrize(
        "values", [np.full((300, 200), 1 + 0j), np.full((300, 200), "1", dtype=object)]
    )
    def test_counts_that_are_not_numbers_are_refused(self, raw_counts, parameters, values):
        raw_counts.layers["strange"] = values
        parameters["counts_layer"] = "strange"

        with pytest.raises(DataProcessingError) as refused:
            validate_raw_data(raw_counts, as_params(parameters))

        message = str(refused.value)
        assert "layers['strange'] of catalog entry raw_counts" in message
        assert f"are stored as {values.dtype}, which cannot hold counts" in message
        # The fix names the matrix that does hold counts.
        assert "adata.X holds integers: set data_processing.counts_layer: null" in message
        settings = printed_settings(message)
        assert settings == {"data_processing.counts_layer": None}
        fixed = apply(settings, {"data_processing": parameters})["data_processing"]
        assert validate_raw_data(raw_counts, as_params(fixed)).n_obs == 300

    def test_integer_and_boolean_counts_pass(self, raw_counts, parameters):
        raw_counts.layers["int"] = sparse.csr_matrix(raw_counts.X, dtype=np.int32)
        raw_counts.layers["bool"] = raw_counts.X.toarray() > 0
        for layer in ("int", "bool"):
            parameters["counts_layer"] = layer
            assert validate_raw_data(raw_counts, as_params(parameters)).n_obs == 300

"""The validation step: configured keys, raw counts in X, names made unique."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pytest
import scanpy as sc
from scipy import sparse

from omics_vae.processing.annotations import RECORD_KEY
from omics_vae.processing.errors import LOCAL_PARAMETERS_FILE, DataProcessingError
from omics_vae.processing.validation import validate_raw_data
from tests.processing.simulated_counts import as_params

LOGGER = "omics_vae.processing"


def log_normalised(adata: ad.AnnData) -> ad.AnnData:
    """The same cells with log-normalised X and the raw counts in layers['counts']."""
    lognorm = adata.copy()
    lognorm.layers["counts"] = lognorm.X.copy()
    sc.pp.normalize_total(lognorm, target_sum=1e4)
    sc.pp.log1p(lognorm)
    return lognorm


class TestValidateRawData:
    def test_returns_float32_csr_counts_without_copying(self, raw_counts, parameters):
        validated = validate_raw_data(raw_counts, as_params(parameters))

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

        validated = validate_raw_data(lognorm, as_params(parameters))

        assert isinstance(validated.X, sparse.csr_matrix)
        assert validated.X.dtype == np.float32
        np.testing.assert_array_equal(validated.X.toarray(), raw_counts.X.toarray())
        assert not validated.layers

    def test_cell_type_key_may_be_null(self, raw_counts, parameters):
        del raw_counts.obs["cell_type"]
        parameters["cell_type_key"] = None

        assert validate_raw_data(raw_counts, as_params(parameters)).n_obs == raw_counts.n_obs

    def test_missing_batch_key_names_key_columns_and_parameter(self, raw_counts, parameters):
        parameters["batch_key"] = "donor"

        with pytest.raises(DataProcessingError) as error:
            validate_raw_data(raw_counts, as_params(parameters))

        message = str(error.value)
        assert "'donor'" in message
        assert "data_processing.batch_key" in message
        assert "['batch', 'cell_type']" in message
        assert LOCAL_PARAMETERS_FILE in message

    def test_missing_cell_type_key_names_key_and_null_option(self, raw_counts, parameters):
        parameters["cell_type_key"] = "celltype"

        with pytest.raises(DataProcessingError, match=r"data_processing\.cell_type_key") as error:
            validate_raw_data(raw_counts, as_params(parameters))

        assert "'celltype'" in str(error.value)
        assert "null" in str(error.value)

    def test_batch_with_missing_values_is_refused(self, raw_counts, parameters):
        batch = raw_counts.obs["batch"].astype(object)
        batch.iloc[:5] = None
        raw_counts.obs["batch"] = batch

        with pytest.raises(DataProcessingError, match=r"obs\['batch'\].* no batch for 5 of 300"):
            validate_raw_data(raw_counts, as_params(parameters))

    def test_missing_counts_layer_lists_layers(self, raw_counts, parameters):
        raw_counts.layers["raw"] = raw_counts.X.copy()
        parameters["counts_layer"] = "counts"

        with pytest.raises(DataProcessingError) as error:
            validate_raw_data(raw_counts, as_params(parameters))

        message = str(error.value)
        assert "layers['counts']" in message
        assert "data_processing.counts_layer" in message
        assert "['raw']" in message

    def test_log_normalised_counts_are_refused_naming_the_counts_layer(
        self, raw_counts, parameters
    ):
        with pytest.raises(DataProcessingError) as error:
            validate_raw_data(log_normalised(raw_counts), as_params(parameters))

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
            validate_raw_data(raw_counts, as_params(parameters))

    def test_negative_values_are_refused(self, raw_counts, parameters):
        dense = raw_counts.X.toarray()
        raw_counts.X = dense - dense.mean(axis=0)

        with pytest.raises(DataProcessingError, match="negative values") as error:
            validate_raw_data(raw_counts, as_params(parameters))

        assert "No layer holds raw counts" in str(error.value)

    def test_duplicate_gene_names_are_made_unique_with_a_warning(
        self, raw_counts, parameters, caplog
    ):
        names = raw_counts.var_names.to_list()
        names[10] = names[11] = "GENE_DUP"
        raw_counts.var_names = names

        with caplog.at_level(logging.WARNING, logger=LOGGER):
            validated = validate_raw_data(raw_counts, as_params(parameters))

        assert validated.var_names.is_unique
        assert "GENE_DUP" in caplog.text
        # The caller's object keeps its names.
        assert raw_counts.var_names[10] == raw_counts.var_names[11] == "GENE_DUP"

    def test_empty_cells_and_genes_are_logged(self, raw_counts, parameters, simulation, caplog):
        counts = raw_counts.X.toarray()
        counts[0] = 0
        raw_counts.X = sparse.csr_matrix(counts)

        with caplog.at_level(logging.INFO, logger=LOGGER):
            validate_raw_data(raw_counts, as_params(parameters))

        assert f"1 cells and {simulation['n_empty_genes']} genes have no counts" in caplog.text

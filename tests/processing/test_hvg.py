"""Highly variable genes: flavors, the cap on n_top_genes and the LOESS span retries."""

from __future__ import annotations

import logging

import numpy as np

from omics_vae.processing.annotations import RECORD_KEY
from omics_vae.processing.hvg import select_highly_variable_genes
from tests.processing.simulated_counts import as_params

LOGGER = "omics_vae.processing"


class TestSelectHighlyVariableGenes:
    def test_flags_n_top_genes(self, normalised, parameters):
        annotated = select_highly_variable_genes(normalised, as_params(parameters))

        assert annotated.var["highly_variable"].sum() == 50
        assert annotated.n_vars == normalised.n_vars
        assert annotated.uns[RECORD_KEY]["n_highly_variable_genes"] == 50
        assert "highly_variable" not in normalised.var

    def test_subset_keeps_only_highly_variable_genes(self, normalised, parameters):
        parameters["hvg"]["subset"] = True

        annotated = select_highly_variable_genes(normalised, as_params(parameters))

        assert annotated.n_vars == 50
        assert annotated.layers["counts"].shape == (normalised.n_obs, 50)
        assert normalised.n_vars == 198

    def test_caps_n_top_genes_at_the_number_of_genes(self, normalised, parameters, caplog):
        parameters["hvg"]["n_top_genes"] = 5_000

        with caplog.at_level(logging.WARNING, logger=LOGGER):
            annotated = select_highly_variable_genes(normalised, as_params(parameters))

        assert "n_top_genes = 5000 exceeds the 198 genes" in caplog.text
        assert annotated.var["highly_variable"].all()

    def test_seurat_v3_reads_the_raw_counts(self, normalised, parameters):
        annotated = select_highly_variable_genes(normalised, as_params(parameters))

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

        with caplog.at_level(logging.WARNING, logger=LOGGER):
            annotated = select_highly_variable_genes(normalised, as_params(parameters))

        assert annotated.uns[RECORD_KEY]["hvg_span"] == 0.5
        assert annotated.var["highly_variable"].sum() == 50
        assert "data_processing.hvg.span = 0.01" in caplog.text
        assert "Set data_processing.hvg.span: 0.5" in caplog.text

    def test_dispersion_flavor_reads_log_normalised_values(self, normalised, parameters):
        parameters["hvg"]["flavor"] = "seurat"

        annotated = select_highly_variable_genes(normalised, as_params(parameters))

        assert annotated.var["highly_variable"].sum() == 50
        assert "dispersions_norm" in annotated.var
        assert annotated.uns[RECORD_KEY]["hvg_span"] is None

"""The train/val/test split: fractions, seed, stratification and its fallbacks."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from omics_vae.processing.annotations import RECORD_KEY
from omics_vae.processing.split import SPLITS, split_cells
from tests.processing.simulated_counts import as_params

LOGGER = "omics_vae.processing"


class TestSplitCells:
    def test_assigns_train_val_test_in_the_configured_fractions(self, annotated, parameters):
        model_input = split_cells(annotated, as_params(parameters))

        split = model_input.obs["split"]
        assert isinstance(split.dtype, pd.CategoricalDtype)
        assert tuple(split.cat.categories) == SPLITS
        fractions = split.value_counts(normalize=True)
        assert fractions["train"] == pytest.approx(0.8, abs=0.02)
        assert fractions["val"] == pytest.approx(0.1, abs=0.02)
        assert fractions["test"] == pytest.approx(0.1, abs=0.02)
        assert "split" not in annotated.obs

    def test_is_reproducible_for_a_seed(self, annotated, parameters):
        first = split_cells(annotated, as_params(parameters)).obs["split"]
        again = split_cells(annotated, as_params(parameters)).obs["split"]
        parameters["split"]["seed"] = 1
        other = split_cells(annotated, as_params(parameters)).obs["split"]

        pd.testing.assert_series_equal(first, again)
        assert not first.equals(other)

    def test_stratifies_by_batch_and_cell_type(self, annotated, parameters, caplog):
        with caplog.at_level(logging.INFO, logger=LOGGER):
            model_input = split_cells(annotated, as_params(parameters))

        assert "stratified by batch x cell_type" in caplog.text
        obs = model_input.obs
        counts = pd.crosstab([obs["batch"], obs["cell_type"]], obs["split"])
        expected = counts.sum(axis=1).to_numpy()[:, None] * np.array([0.8, 0.1, 0.1])
        # Stratified: every group is within two cells of its share in each split.
        assert np.abs(counts[list(SPLITS)].to_numpy() - expected).max() <= 2

    def test_falls_back_to_batch_without_cell_types(self, annotated, parameters, caplog):
        parameters["cell_type_key"] = None

        with caplog.at_level(logging.INFO, logger=LOGGER):
            model_input = split_cells(annotated, as_params(parameters))

        assert "stratified by batch." in caplog.text
        per_batch = pd.crosstab(model_input.obs["batch"], model_input.obs["split"])
        assert (per_batch["val"] >= 8).all()

    def test_falls_back_to_no_stratification_for_a_lone_cell(self, annotated, parameters, caplog):
        batch = annotated.obs["batch"].astype(str).to_numpy()
        batch[0] = "lonely"
        annotated.obs["batch"] = pd.Categorical(batch)

        with caplog.at_level(logging.INFO, logger=LOGGER):
            model_input = split_cells(annotated, as_params(parameters))

        assert "stratified by nothing" in caplog.text
        assert model_input.obs["split"].notna().all()

    def test_records_lineage_and_writes_to_h5ad(self, annotated, parameters, tmp_path):
        model_input = split_cells(annotated, as_params(parameters))
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

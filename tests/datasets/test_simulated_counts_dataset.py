from __future__ import annotations

import inspect
from pathlib import Path

import pandas as pd
import pytest
import yaml
from anndata import AnnData
from kedro.io import DataCatalog
from kedro.io.core import DatasetError

from omics_vae.data.simulate import simulate_counts
from omics_vae.datasets import SimulatedCountsDataset

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SMALL = {"n_cells": 200, "n_genes": 120, "n_batches": 2, "n_cell_types": 3, "seed": 5}


@pytest.fixture
def simulated_dataset():
    return SimulatedCountsDataset(**SMALL, metadata={"kedro-viz": {"layer": "raw"}})


class TestSimulatedCountsDataset:
    def test_load_returns_the_simulation(self, simulated_dataset):
        loaded = simulated_dataset.load()
        expected = simulate_counts(**SMALL)

        assert isinstance(loaded, AnnData)
        assert loaded.shape == (200, 120)
        assert {"batch", "cell_type"} <= set(loaded.obs.columns)
        assert (loaded.X != expected.X).nnz == 0
        pd.testing.assert_frame_equal(loaded.obs, expected.obs)

    def test_every_load_gives_the_same_data(self, simulated_dataset):
        assert (simulated_dataset.load().X != simulated_dataset.load().X).nnz == 0

    def test_save_is_refused_with_a_way_out(self, simulated_dataset):
        with pytest.raises(DatasetError, match="read-only") as error:
            simulated_dataset.save(simulated_dataset.load())
        assert "raw_counts" in str(error.value)
        assert "omics_vae.datasets.H5ADDataset" in str(error.value)

    def test_exists(self, simulated_dataset):
        assert simulated_dataset.exists()

    def test_describe_lists_the_arguments(self, simulated_dataset):
        description = str(simulated_dataset)
        assert "SimulatedCountsDataset" in description
        for name, value in SMALL.items():
            assert f"{name}={value}" in description
        assert simulated_dataset.metadata == {"kedro-viz": {"layer": "raw"}}

    def test_unset_arguments_take_simulate_counts_defaults(self):
        description = str(SimulatedCountsDataset(n_cells=10))
        for name, parameter in inspect.signature(simulate_counts).parameters.items():
            value = 10 if name == "n_cells" else parameter.default
            assert f"{name}={value}" in description

    def test_misspelt_argument_is_named(self):
        catalog = DataCatalog.from_config(
            {"raw": {"type": "omics_vae.datasets.SimulatedCountsDataset", "n_cell": 10}}
        )
        with pytest.raises(DatasetError, match="unexpected keyword argument 'n_cell'"):
            catalog.load("raw")

    def test_base_catalog_entry_is_valid(self):
        """conf/base/catalog.yml's raw_counts builds and loads (shrunk to stay fast)."""
        catalog_config = yaml.safe_load((PROJECT_ROOT / "conf/base/catalog.yml").read_text())
        entry = catalog_config["raw_counts"]
        assert entry["type"] == "omics_vae.datasets.SimulatedCountsDataset"

        catalog = DataCatalog.from_config({"raw_counts": {**entry, "n_cells": 150}})
        loaded = catalog.load("raw_counts")

        assert loaded.shape == (150, entry["n_genes"])
        assert loaded.obs["batch"].nunique() == entry["n_batches"]

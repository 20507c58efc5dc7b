import pytest
from kedro.io import DataCatalog
from kedro.io.core import DatasetError

from omics_vae.datasets import SimulatedPairedDataset


def test_platforms_share_samples():
    table_a = SimulatedPairedDataset(platform="a", n_samples=20, n_unpaired=0).load()
    table_b = SimulatedPairedDataset(platform="b", n_samples=20, n_unpaired=0).load()
    assert set(table_a["sample_id"]) == set(table_b["sample_id"])
    assert table_a.shape[1] == 201


def test_describe_lists_defaults():
    description = str(SimulatedPairedDataset(platform="a", n_samples=20))
    assert "n_samples=20" in description
    assert "n_features_b=60" in description


def test_misspelt_argument_is_named():
    catalog = DataCatalog.from_config(
        {"a": {"type": "omics_vae.datasets.SimulatedPairedDataset", "platform": "a", "n_sample": 5}}
    )
    with pytest.raises(DatasetError, match="unexpected keyword argument 'n_sample'"):
        catalog.load("a")

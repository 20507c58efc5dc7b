"""TrainedModelStoreDataset: a read-only handle on the MLflow store of trained models."""

from __future__ import annotations

import mlflow
import pytest
from kedro.io import DatasetError

from omics_vae.datasets import TrainedModelStoreDataset
from omics_vae.store.reuse import ModelStore


def test_loads_a_store_on_the_given_or_current_tracking_uri(tmp_path, monkeypatch):
    given = f"sqlite:///{tmp_path / 'given.db'}"
    assert TrainedModelStoreDataset(tracking_uri=given).load() == ModelStore(given)
    current = f"sqlite:///{tmp_path / 'current.db'}"
    monkeypatch.setattr(mlflow, "get_tracking_uri", lambda: current)
    store = TrainedModelStoreDataset().load()
    assert store.tracking_uri == current
    assert store.client().tracking_uri == current


def test_is_read_only():
    with pytest.raises(DatasetError, match="read-only"):
        TrainedModelStoreDataset().save(ModelStore())

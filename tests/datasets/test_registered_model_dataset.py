"""RegisteredModelDataset on a real MLflow sqlite store with a really trained model."""

from __future__ import annotations

import numpy as np
import pytest
from kedro.io import DatasetError
from tests.test_runs import log_training_run, tiny_model_input, train_tiny

from omics_vae import runs
from omics_vae.datasets import RegisteredModelDataset


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store with one trained scVI-style model registered as scvi_vae@champion."""
    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    data = tiny_model_input()
    model, card = train_tiny(data, "scvi_vae", folder / "ckpt")
    run_id = log_training_run(uri, model, card, metrics={"scib/total": 0.6}, folder=folder)
    runs.register_model(run_id, alias="champion", tracking_uri=uri)
    return uri, run_id, model, data


@pytest.mark.parametrize("reference", ["models:/scvi_vae@champion", "models:/scvi_vae/1", "run"])
def test_loads_the_model_and_its_card(store, reference):
    uri, run_id, trained, data = store
    model_uri = f"runs:/{run_id}/model" if reference == "run" else reference

    model = RegisteredModelDataset(model_uri=model_uri, tracking_uri=uri).load()
    card = RegisteredModelDataset(model_uri=model_uri, part="card", tracking_uri=uri).load()

    assert model.registry_name == "scvi_vae"
    np.testing.assert_allclose(
        model.get_latent(data)[model.corrected_latent],
        trained.get_latent(data)[trained.corrected_latent],
        rtol=1e-5,
        atol=1e-6,
    )
    assert card["model"] == "scvi_vae"
    assert card["model_uri"] == model_uri


def test_an_unknown_alias_is_named(store):
    dataset = RegisteredModelDataset(model_uri="models:/scvi_vae@nobody", tracking_uri=store[0])
    with pytest.raises(DatasetError, match="models:/scvi_vae@nobody"):
        dataset.load()


def test_is_read_only_and_describes_its_uri(store):
    dataset = RegisteredModelDataset(model_uri="models:/scvi_vae@champion", part="card")
    with pytest.raises(DatasetError, match="read-only"):
        dataset.save({})
    assert "models:/scvi_vae@champion" in str(dataset)
    with pytest.raises(DatasetError, match="part must be"):
        RegisteredModelDataset(model_uri="models:/scvi_vae@champion", part="weights")

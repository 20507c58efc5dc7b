"""The embedding pipeline with a model from MLflow's registry (embedding.model_uri)."""

from __future__ import annotations

import numpy as np
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from omics_vae import runs
from omics_vae.params import InvalidParametersError
from omics_vae.pipelines.embedding.nodes import choose_model
from omics_vae.pipelines.embedding.pipeline import create_pipeline
from omics_vae.pipelines.training.nodes import make_model_card, train_model
from tests.test_runs import log_training_run


@pytest.fixture
def registered_store(tmp_path, monkeypatch, model_input, training_params):
    """An inVAE registered as invae@champion in a temporary store, found via the env."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    model, history, summary = train_model(model_input, training_params)
    card = make_model_card(summary, training_params, history)
    run_id = log_training_run(uri, model, card, metrics={"scib/total": 0.5}, folder=tmp_path)
    runs.register_model(run_id, alias="champion")
    return model


@pytest.fixture
def catalog_model(model_input, training_params):
    """A different model in the catalog (an scVI-style VAE), to tell the two apart."""
    training_params["model"] = "scvi_vae"
    model, history, summary = train_model(model_input, training_params)
    return model, make_model_card(summary, training_params, history)


def _run_embedding(model_input, catalog_model, params) -> DataCatalog:
    model, card = catalog_model
    catalog = DataCatalog(
        {
            "model_input": MemoryDataset(model_input),
            "model": MemoryDataset(model, copy_mode="assign"),
            "model_card": MemoryDataset(card),
            "params:embedding": MemoryDataset(params),
        }
    )
    SequentialRunner().run(create_pipeline(), catalog)
    return catalog


def test_a_registered_model_embeds_instead_of_the_catalog_one(
    model_input, registered_store, catalog_model
):
    catalog = _run_embedding(
        model_input, catalog_model, {"batch_size": 64, "model_uri": "models:/invae@champion"}
    )

    embeddings = catalog.load("embeddings")
    assert "X_scvi_vae" not in embeddings.obsm
    expected = registered_store.get_latent(model_input)["z_i"]
    np.testing.assert_allclose(embeddings.obsm["X_invae"], expected, rtol=1e-5, atol=1e-6)
    info = catalog.load("embedding_info")
    assert info["model"] == "invae"
    assert info["model_uri"] == "models:/invae@champion"


def test_without_a_model_uri_the_catalog_model_embeds(model_input, catalog_model):
    catalog = _run_embedding(model_input, catalog_model, {"batch_size": 64, "model_uri": None})

    assert "X_scvi_vae" in catalog.load("embeddings").obsm
    assert catalog.load("embedding_info")["model_uri"] is None


def test_an_unknown_alias_is_named(model_input, registered_store, catalog_model):
    model, card = catalog_model
    with pytest.raises(runs.ModelNotFoundError, match="models:/invae@nobody"):
        choose_model(model, card, {"model_uri": "models:/invae@nobody"})


@pytest.mark.parametrize("uri", ["invae@champion", "runs:/abc/model", "models:/invae"])
def test_model_uri_must_name_a_registered_version(catalog_model, uri):
    model, card = catalog_model
    with pytest.raises(InvalidParametersError, match=r"embedding\.model_uri"):
        choose_model(model, card, {"model_uri": uri})

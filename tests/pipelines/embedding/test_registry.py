"""The embedding pipeline with a model from the MLflow store (embedding.model_uri)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, DatasetError, MemoryDataset
from kedro.runner import SequentialRunner
from kedro_datasets.yaml import YAMLDataset

from omics_vae import runs
from omics_vae.datasets import LightningCheckpointDataset, RegisteredModelDataset
from omics_vae.hooks import RegisteredModelHooks
from omics_vae.params import InvalidParametersError, validate_section
from omics_vae.pipelines import embedding, training
from omics_vae.pipelines.training.nodes import make_model_card
from omics_vae.schemas.embedding import EmbeddingParams
from omics_vae.training.single_cell import train_model
from tests.conftest import validated_block
from tests.test_runs import log_training_run


@pytest.fixture
def registered_store(tmp_path, monkeypatch, model_input, training_params):
    """An inVAE registered as invae@champion in a temporary store, found via the env."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    model, history, summary = train_model(model_input, training_params)
    card = make_model_card(summary, validated_block("training", training_params), history)
    run_id = log_training_run(uri, model, card, metrics={"scib/total": 0.5}, folder=tmp_path)
    runs.register_model(run_id, alias="champion")
    return model


def fresh_clone_catalog(model_input, folder, params) -> DataCatalog:
    """The catalog's model entries on a machine that never trained: no checkpoint files."""
    return DataCatalog(
        {
            "model_input": MemoryDataset(model_input),
            "model": LightningCheckpointDataset(filepath=str(folder / "06_models/model.ckpt")),
            "model_card": YAMLDataset(filepath=str(folder / "06_models/model_card.yml")),
            "params:embedding": MemoryDataset(validated_block("embedding", params)),
            "new_labels": MemoryDataset(pd.DataFrame(columns=["cell_id", "label"])),
        }
    )


def serve_model_uri(catalog: DataCatalog, params: dict) -> None:
    """What Kedro does after creating the catalog of a run with these parameters."""
    parameters = {f"params:embedding.{key}": value for key, value in params.items()}
    RegisteredModelHooks().after_catalog_created(catalog, parameters=parameters)


def test_a_registered_model_embeds_without_a_local_checkpoint(
    model_input, registered_store, tmp_path
):
    params = {"batch_size": 64, "model_uri": "models:/invae@champion"}
    catalog = fresh_clone_catalog(model_input, tmp_path / "data", params)
    serve_model_uri(catalog, params)

    SequentialRunner().run(embedding.create_pipeline(), catalog)

    assert isinstance(catalog.get("model"), RegisteredModelDataset)
    embeddings = catalog.load("embeddings")
    expected = registered_store.get_latent(model_input)["z_i"]
    np.testing.assert_allclose(embeddings.obsm["X_invae"], expected, rtol=1e-5, atol=1e-6)
    info = catalog.load("embedding_info")
    assert info["model"] == "invae"
    assert info["model_uri"] == "models:/invae@champion"
    assert info["seed"] == 0
    assert not (tmp_path / "data" / "06_models").exists()


def test_without_a_model_uri_the_catalog_checkpoint_is_read(model_input, tmp_path):
    params = {"batch_size": 64, "model_uri": None}
    catalog = fresh_clone_catalog(model_input, tmp_path / "data", params)
    serve_model_uri(catalog, params)

    assert isinstance(catalog.get("model"), LightningCheckpointDataset)
    with pytest.raises(DatasetError, match=r"model\.ckpt"):
        SequentialRunner().run(embedding.create_pipeline(), catalog)


def test_a_run_that_also_trains_is_refused_before_it_starts(model_input, tmp_path):
    params = {"batch_size": 64, "model_uri": "models:/invae@champion"}
    catalog = fresh_clone_catalog(model_input, tmp_path / "data", params)
    serve_model_uri(catalog, params)
    trains_and_embeds = training.create_pipeline() + embedding.create_pipeline()

    with pytest.raises(InvalidParametersError, match="also trains `model`"):
        RegisteredModelHooks().before_pipeline_run(trains_and_embeds, catalog)
    RegisteredModelHooks().before_pipeline_run(embedding.create_pipeline(), catalog)


@pytest.mark.parametrize("uri", ["invae@champion", "runs:/abc/model", "models:/invae"])
def test_model_uri_must_name_a_version_or_a_run(uri):
    with pytest.raises(InvalidParametersError, match=r"embedding\.model_uri"):
        validate_section("embedding", EmbeddingParams, {"model_uri": uri})


@pytest.mark.parametrize(
    "uri", ["models:/invae@champion", "models:/invae/3", f"runs:/{'a1' * 16}/model"]
)
def test_model_uri_takes_registered_versions_and_runs(uri):
    assert validate_section("embedding", EmbeddingParams, {"model_uri": uri}).model_uri == uri

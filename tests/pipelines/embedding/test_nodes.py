"""The embedding node and pipeline on tiny data with a really trained model. What the
embedding computes is tested in ``tests/embedding``."""

from __future__ import annotations

import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from omics_vae.pipelines.embedding.pipeline import create_pipeline
from omics_vae.pipelines.training.nodes import make_model_card
from omics_vae.training.single_cell import train_model
from tests.conftest import validated_block

EMBEDDING_PARAMS = {"batch_size": 64, "reconstruction_error": True}


@pytest.fixture(params=["invae", "scvi_vae"])
def trained(request, model_input, training_params):
    training_params["model"] = request.param
    model, history, summary = train_model(model_input, training_params)
    return model, make_model_card(summary, validated_block("training", training_params), history)


def test_pipeline_runs_on_an_in_memory_catalog(model_input, trained):
    model, card = trained
    catalog = DataCatalog(
        {
            "model_input": MemoryDataset(model_input),
            "model": MemoryDataset(model, copy_mode="assign"),
            "model_card": MemoryDataset(card),
            "params:embedding": MemoryDataset(validated_block("embedding", EMBEDDING_PARAMS)),
            "new_labels": MemoryDataset(pd.DataFrame(columns=["cell_id", "label"])),
        }
    )
    SequentialRunner().run(create_pipeline(), catalog)
    assert catalog.load("embeddings").n_obs == model_input.n_obs
    assert catalog.load("embedding_info")["model"] == model.registry_name

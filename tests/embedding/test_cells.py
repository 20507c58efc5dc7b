"""The single-cell embedding library on tiny data with a really trained model."""

from __future__ import annotations

import numpy as np
import pytest

from omics_vae.embedding.cells import EmbeddingInputError, changed_from_defaults, embed_cells
from omics_vae.pipelines.training.nodes import make_model_card
from omics_vae.schemas.embedding import EmbeddingParams
from omics_vae.training.single_cell import train_model
from tests.conftest import validated_block

CONFIG = EmbeddingParams(batch_size=64, reconstruction_error=True)


@pytest.fixture(params=["invae", "scvi_vae"])
def trained(request, model_input, training_params):
    training_params["model"] = request.param
    model, history, summary = train_model(model_input, training_params)
    return model, make_model_card(summary, validated_block("training", training_params), history)


def test_every_cell_gets_its_latents_error_and_lineage(model_input, trained):
    model, card = trained
    embeddings, table, info = embed_cells(model_input, model, card, CONFIG)

    name = model.registry_name
    assert list(embeddings.obs_names) == list(model_input.obs_names)
    assert "split" in embeddings.obs
    latent = embeddings.obsm[f"X_{name}"]
    assert latent.shape == (model_input.n_obs, 30)
    np.testing.assert_allclose(latent, model.get_latent(model_input)[model.corrected_latent])
    if name == "invae":
        assert embeddings.obsm["X_invae_technical"].shape == (model_input.n_obs, 5)
        assert embeddings.uns["embedding"]["supervised"] is True
    else:
        assert embeddings.uns["embedding"]["technical_key"] is None
        assert embeddings.uns["embedding"]["supervised"] is False
    assert (embeddings.obs["reconstruction_error"] > 0).all()
    assert list(table.columns[:2]) == ["cell_id", f"X_{name}_0"]
    assert len(table) == model_input.n_obs
    assert info["data"]["fingerprint"] == info["data"]["trained_on_fingerprint"]
    assert info["training_parameters_changed"]["trainer.max_epochs"] == 3
    assert info["training_parameters_changed"][f"hyperparameters.{name}.n_hidden"] == 16


def test_batch_size_does_not_change_the_latents(model_input, trained):
    model, card = trained
    small, _, _ = embed_cells(model_input, model, card, EmbeddingParams(batch_size=7))
    large, _, _ = embed_cells(model_input, model, card, EmbeddingParams(batch_size=1000))
    key = small.uns["embedding"]["latent_key"]
    np.testing.assert_allclose(small.obsm[key], large.obsm[key], rtol=1e-5, atol=1e-6)


def test_data_with_other_genes_is_refused(model_input, trained):
    model, card = trained
    with pytest.raises(EmbeddingInputError, match="trained on 50 genes but model_input has 40"):
        embed_cells(model_input[:, :40].copy(), model, card, CONFIG)


def test_missing_covariate_is_named(model_input, trained):
    model, card = trained
    del model_input.obs["batch"]
    with pytest.raises(EmbeddingInputError, match=r"obs\['batch'\]"):
        embed_cells(model_input, model, card, CONFIG)


def test_defaults_report_no_changes():
    assert changed_from_defaults({"model": "invae", "seed": 0}) == {}
    assert changed_from_defaults({"model": "invae", "seed": 3}) == {"seed": 3}

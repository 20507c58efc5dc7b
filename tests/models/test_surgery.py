"""Query mapping's model surgery: new batch columns, nothing else trained."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from omics_vae.embedding.mapping import map_query
from omics_vae.models import SCVIVAE, InVAE
from omics_vae.models.surgery import query_batches, with_query_batches
from omics_vae.schemas.mapping import MappingParams
from tests.models.conftest import synthetic_adata

SMALL = {"n_hidden": 16, "n_layers": 2}


def reference_and_query():
    """A reference of batches batch0 and batch1; a query of batch1 and a new batch2."""
    adata = synthetic_adata(n_cells=288, seed=4)
    batches = adata.obs["batch"].astype(str).to_numpy().copy()
    query_cells = np.arange(adata.n_obs) >= 192
    batches[query_cells & (np.arange(adata.n_obs) % 2 == 0)] = "batch2"
    adata.obs["batch"] = pd.Categorical(batches)
    reference = adata[~query_cells].copy()
    reference.obs["batch"] = reference.obs["batch"].cat.remove_unused_categories()
    return reference, adata[query_cells].copy()


@pytest.mark.parametrize(
    ("model_class", "params"),
    [
        (InVAE, {"bio_keys": ["cell_type"], "n_latent_bio": 4}),
        (InVAE, {"n_latent_bio": 4}),
        (SCVIVAE, {"n_latent": 4, "encode_covariates": True}),
    ],
    ids=["invae", "invae_unsupervised", "scvi_vae"],
)
def test_new_batches_get_their_own_columns_and_nothing_else_changes(model_class, params):
    reference, query = reference_and_query()
    torch.manual_seed(0)
    model = model_class.from_anndata(reference, {**params, "tech_keys": ["batch"], **SMALL})
    model.eval()
    before = model.get_latent(reference)[model.corrected_latent]
    frozen = {k: v.clone() for k, v in model.state_dict().items()}

    batches = query_batches(model.encoders["tech"].categories, query.obs)
    assert batches.new == {"batch": ["batch2"]}
    extended, widened = with_query_batches(model, batches)
    assert widened
    np.testing.assert_array_equal(extended.get_latent(reference)[model.corrected_latent], before)

    mapped, embeddings, record = map_query(query, model, MappingParams(max_epochs=5))

    assert record["new_batches"] == {"batch": ["batch2"]}
    assert record["epochs"] == 5
    assert embeddings.n_obs == query.n_obs
    np.testing.assert_array_equal(mapped.get_latent(reference)[model.corrected_latent], before)
    state = mapped.state_dict()
    trained = []
    for name, old in frozen.items():
        if name in widened:
            features = state[name].shape[1] - 3
            torch.testing.assert_close(state[name][:, : features + 2], old, rtol=0, atol=0)
            if state[name][:, features + 2].abs().sum() > 0:
                trained.append(name)
        elif not name.endswith("num_batches_tracked"):  # counts steps, used by no output
            torch.testing.assert_close(state[name], old, rtol=0, atol=0, msg=name)
    # The decoder learns the new batch (a prior without dimensions gets no gradient).
    assert any(name.startswith("module.decoder.") for name in trained), trained

"""Checkpoints written by an earlier version still load, as the models they were.

``saved/*.ckpt`` were written with ``LightningCheckpointDataset`` by the code of commit
456f4ea, when the code defaults of scvi_vae (``n_latent`` 10, ``n_layers`` 1) and
joint_vae (``input_noise`` 0.0) differed from the documented ones; ``saved/latents.json``
holds each model's posterior means of the fixed batches below, computed by that code.
A checkpoint carries every hyperparameter, so a later change of a default must not
change the model it rebuilds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from omics_vae.models.checkpoints import load_model_file

SAVED = Path(__file__).parent / "saved"


def counts_batch(n_genes: int) -> dict[str, torch.Tensor]:
    counts = torch.arange(3 * n_genes, dtype=torch.float32).reshape(3, n_genes) % 7
    return {
        "counts": counts,
        "bio": torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]),
        "tech": torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]),
    }


def paired_batch() -> dict[str, torch.Tensor]:
    x = torch.linspace(-1, 1, 3 * 5).reshape(3, 5)
    return {"x_a": x[:, :4], "x_b": x[:, 1:]}


BATCHES = {"scvi_vae": counts_batch(6), "invae": counts_batch(6), "joint_vae": paired_batch()}
# What the earlier version saved, where today's defaults differ.
SAVED_HYPERPARAMETERS = {
    "scvi_vae": {"n_latent": 10, "n_layers": 1, "batch_norm": "both", "kl_warmup_epochs": 10},
    "invae": {"n_latent_bio": 3, "n_latent_tech": 2, "n_hidden": 8, "beta_max": 1.0},
    "joint_vae": {"input_noise": 0.0, "n_hidden": 8, "platform_a": "rna"},
}


@pytest.mark.parametrize("name", sorted(BATCHES))
def test_a_checkpoint_of_an_earlier_version_rebuilds_the_same_model(name):
    model = load_model_file(SAVED / f"{name}.ckpt")
    assert model.registry_name == name
    for key, value in SAVED_HYPERPARAMETERS[name].items():
        assert model.hparams[key] == value, key
    expected = json.loads((SAVED / "latents.json").read_text())[name]
    with torch.no_grad():
        latent = model.module.latent(model.module.inference(BATCHES[name], sample=False))
    assert set(latent) == set(expected)
    for key, values in expected.items():
        torch.testing.assert_close(latent[key], torch.tensor(values), rtol=1e-5, atol=1e-6)

"""inVAE with partly labelled cells: unknown labels in the data, the mixture prior, the
label classifier, and an encoder that never reads the label."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

from omics_vae.data.tensors import CountsTensors, CovariateEncoder, UnknownCategoryError
from omics_vae.models import InVAE
from omics_vae.models.distributions import batch_mmd, gaussian_kl, gaussian_mmd
from omics_vae.models.trainer import FitSettings, fit
from tests.models.conftest import synthetic_adata

SMALL = {"n_hidden": 16, "n_layers": 2, "n_latent_bio": 4, "n_latent_tech": 2}


def hide_labels(adata: ad.AnnData, every: int = 2, value: str | None = "unknown") -> ad.AnnData:
    """A copy whose ``label`` column hides every ``every``-th cell's cell type."""
    hidden = adata.copy()
    labels = hidden.obs["cell_type"].astype(object).to_numpy().copy()
    labels[::every] = value
    hidden.obs["label"] = labels
    return hidden


def semi_supervised(adata: ad.AnnData, **overrides) -> InVAE:
    torch.manual_seed(0)
    params = {"bio_keys": ["label"], "tech_keys": ["batch"], "unlabelled_category": "unknown"}
    return InVAE.from_anndata(adata, {**params, **SMALL}, **overrides)


def test_the_encoder_ignores_the_unlabelled_category_and_missing_values():
    obs = pd.DataFrame({"label": ["a", "unknown", None, "b", "a"]})
    encoder = CovariateEncoder.fit(obs, ["label"], unlabelled="unknown")
    assert encoder.categories == {"label": ["a", "b"]}
    one_hot = encoder.one_hot(obs, unknown="missing")
    np.testing.assert_array_equal(one_hot, [[1, 0], [0, 0], [0, 0], [0, 1], [1, 0]])
    assert encoder.one_hot(pd.DataFrame(index=range(2)), unknown="missing").sum() == 0
    with pytest.raises(UnknownCategoryError, match="'unknown'"):
        encoder.codes(obs.iloc[:2])


def test_unlabelled_cells_get_the_classifier_weighted_mixture_prior():
    adata = hide_labels(synthetic_adata())
    model = semi_supervised(adata)
    assert model.encoders["bio"].categories["label"] == ["type0", "type1", "type2"]
    assert model.label_key == "label"
    batch = CountsTensors.from_anndata(adata, encoders=model.encoders).slice(0, 32)
    labelled = batch["bio"].sum(dim=1) > 0
    assert 0 < int(labelled.sum()) < 32
    module = model.module
    module.eval()  # the classifier's dropout would draw differently on each call
    inference = module.inference(batch, sample=False)
    generative = module.generative(**module.generative_inputs(batch, inference))
    output = module.loss(batch, inference, generative)

    mean_i, var_i = inference["qz_mean"][:, :4], inference["qz_var"][:, :4]
    probabilities = torch.softmax(module.classify(inference), dim=-1)
    expected = []
    for cell in range(32):
        if labelled[cell]:
            prior_mean, prior_var = module.prior_bio(batch["bio"][cell : cell + 1])
            expected.append(
                gaussian_kl(mean_i[cell : cell + 1], var_i[cell : cell + 1], prior_mean, prior_var)[
                    0
                ]
            )
            continue
        mixture = 0.0
        for label in range(3):
            one_hot = torch.nn.functional.one_hot(torch.tensor([label]), 3).float()
            prior_mean, prior_var = module.prior_bio(one_hot)
            kl = gaussian_kl(
                mean_i[cell : cell + 1], var_i[cell : cell + 1], prior_mean, prior_var
            )[0]
            q = probabilities[cell, label]
            mixture = mixture + q * (kl + torch.log(q * 3))
        expected.append(mixture)
    torch.testing.assert_close(
        output.extra["kl_bio"], torch.stack(expected).mean(), rtol=1e-4, atol=1e-4
    )
    targets = batch["bio"][labelled].argmax(dim=1)
    ce = torch.nn.functional.cross_entropy(module.classify(inference)[labelled], targets)
    torch.testing.assert_close(output.extra["classification"], ce)
    torch.testing.assert_close(
        output.loss,
        output.reconstruction + output.kl + 50.0 * output.extra["classification"],
    )


def test_the_latent_does_not_depend_on_the_label_given():
    adata = synthetic_adata()
    model = semi_supervised(hide_labels(adata))
    shuffled = hide_labels(adata, every=1)  # every label unknown
    shuffled.obs["label"] = pd.Categorical(["type0"] * adata.n_obs)
    as_given = model.get_latent(hide_labels(adata))["z_i"]
    np.testing.assert_array_equal(as_given, model.get_latent(shuffled)["z_i"])
    without_column = adata.copy()
    labels, probabilities = model.predict_labels(without_column)
    assert probabilities.shape == (adata.n_obs, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert set(labels) <= {"type0", "type1", "type2"}


def test_training_on_half_the_labels_predicts_the_hidden_ones(tmp_path):
    adata = synthetic_adata(n_cells=384, seed=3)
    hidden = hide_labels(adata)
    model = semi_supervised(hidden)
    tensors = model.make_tensors(hidden)
    settings = FitSettings(
        max_epochs=40,
        batch_size=64,
        early_stopping_patience=None,
        enable_progress_bar=False,
        checkpoint_dir=str(tmp_path),
    )
    fit(model, tensors.subset("train"), tensors.subset("val"), settings)
    labels, _ = model.predict_labels(hidden)
    truth = adata.obs["cell_type"].astype(str).to_numpy()
    was_hidden = np.zeros(adata.n_obs, dtype=bool)
    was_hidden[::2] = True
    # Three cell types: chance is about a third.
    assert (labels[was_hidden] == truth[was_hidden]).mean() > 0.8


def test_the_decoder_reads_the_batch_unless_told_not_to():
    adata = synthetic_adata()
    batch = CountsTensors.from_anndata(adata, bio_keys=["cell_type"], tech_keys=["batch"]).slice(
        0, 8
    )
    for conditioned in (True, False):
        model = semi_supervised(hide_labels(adata), decoder_covariates=conditioned)
        model.eval()
        z = torch.zeros(8, 6)
        flipped = batch["tech"].flip(dims=[1])
        logits = model.module.decoder(z, batch["tech"] if conditioned else None)
        other = model.module.decoder(z, flipped if conditioned else None)
        assert conditioned == (not torch.allclose(logits, other))


def test_the_batch_mmd_is_zero_for_one_distribution_and_grows_with_a_shift():
    torch.manual_seed(0)
    z = torch.randn(64, 3)
    same = torch.zeros(64, dtype=torch.long)
    assert float(batch_mmd(z, same)) == 0.0
    torch.testing.assert_close(gaussian_mmd(z, z), torch.tensor(0.0), atol=1e-6, rtol=0)
    batches = torch.arange(64) % 2
    shifted = z + 3.0 * batches[:, None]
    assert float(batch_mmd(shifted, batches)) > 10 * float(batch_mmd(z, batches))
    model = semi_supervised(hide_labels(synthetic_adata()), batch_mmd_weight=100.0)
    batch = model.make_tensors(hide_labels(synthetic_adata())).slice(0, 64)
    output = model.module(batch)
    assert "batch_mmd" in output.extra
    torch.testing.assert_close(
        output.loss,
        output.reconstruction
        + output.kl
        + 50.0 * output.extra["classification"]
        + 100.0 * output.extra["batch_mmd"],
    )


def test_encoding_labels_as_the_reference_inVAE_does_needs_no_classifier():
    adata = synthetic_adata()
    model = InVAE.from_anndata(
        adata, {"bio_keys": ["cell_type"], "tech_keys": ["batch"], **SMALL}, encode_labels=True
    )
    assert model.module.classifier is None
    assert model.label_key is None
    assert "classifier" not in model.module.named_parts()
    assert model.module.encoder.hidden.layers[0][0].in_features == adata.n_vars + 3 + 2

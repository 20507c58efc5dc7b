"""The joint VAE: its loss parts on tiny data, options, training and checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omics_vae.data.paired import PairedTensors
from omics_vae.datasets import LightningCheckpointDataset
from omics_vae.models import JointVAE, get_model_class
from omics_vae.models.distributions import gaussian_mmd
from omics_vae.models.trainer import FitSettings, fit

PARTS = ("self_a", "self_b", "cross_ab", "cross_ba", "joint_reconstruction", "kl_joint")


def _paired_batch(n=32, n_a=12, n_b=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 3, generator=generator)
    x_a = z @ torch.randn(3, n_a, generator=generator) + 0.1 * torch.randn(n, n_a)
    x_b = torch.tanh(z @ torch.randn(3, n_b, generator=generator))
    return {"x_a": x_a, "x_b": x_b}


def _model(**kwargs):
    torch.manual_seed(0)
    return JointVAE(12, 5, n_hidden=16, n_latent=4, **kwargs)


def test_registered_by_name_with_named_parts():
    model = get_model_class("joint_vae")(12, 5, n_hidden=8)
    assert set(model.module.named_parts()) == {
        "encoder_a",
        "encoder_b",
        "decoder_a",
        "decoder_b",
        "prior",
    }
    assert set(model.module.loss_weights) == {
        "self_reconstruction_a",
        "self_reconstruction_b",
        "cross_reconstruction",
        "joint_reconstruction",
        "alignment",
    }


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"likelihood": "mse", "alignment": "mmd", "input_noise": 0.2},
        {"prior": "vamp", "n_pseudo_inputs": 4},
        {"iwae_samples": 4, "prior": "vamp", "n_pseudo_inputs": 4},
    ],
)
def test_loss_is_the_weighted_sum_of_finite_parts_with_gradients(options):
    model = _model(**options)
    output = model.module(_paired_batch(), kl_weight=1.0)
    assert set(PARTS) | {"alignment"} <= set(output.extra)
    assert all(torch.isfinite(v) for v in (output.loss, output.kl, *output.extra.values()))
    assert float(output.reconstruction) == pytest.approx(
        float(output.extra["self_a"] + output.extra["self_b"])
    )
    output.loss.backward()
    mse = options.get("likelihood") == "mse"
    for name, part in model.module.named_parts().items():
        # Under mse the decoders' variances are fixed at 1 and get no gradient.
        grads = [p.grad for key, p in part.named_parameters() if key != "log_var" or not mse]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), name


def test_elbo_loss_is_exactly_its_weighted_parts():
    model = _model(beta_max=0.5, cross_weight=2.0, alignment_weight=3.0, joint_weight=0.0)
    model.eval()  # posterior means: the parts and the loss see the same draws
    module = model.module
    batch = _paired_batch()
    out = module.inference(batch, sample=False)
    parts = module.loss(batch, out, module.generative(**module.generative_inputs(batch, out)), 0.5)
    e = parts.extra
    expected = (
        e["self_a"] + e["self_b"] + 2.0 * (e["cross_ab"] + e["cross_ba"]) + 0.5 * parts.kl
    ) + 3.0 * e["alignment"]
    assert float(parts.loss) == pytest.approx(float(expected), rel=1e-5)


def test_loss_weights_change_the_loss_and_cross_reconstruction_can_be_switched_off():
    model = _model()
    model.eval()
    batch = _paired_batch()
    full = model.module(batch, sample=False).loss
    model.module.loss_weights["cross_reconstruction"] = 0.0
    without_cross = model.module(batch, sample=False).loss
    parts = model.module(batch, sample=False).extra
    assert float(full - without_cross) == pytest.approx(
        float(parts["cross_ab"] + parts["cross_ba"]), rel=1e-5
    )


def test_mmd_is_zero_for_one_sample_and_positive_for_shifted_ones():
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(1))
    assert float(gaussian_mmd(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(gaussian_mmd(x, x + 3.0)) > 0.1


def _tensors(n=120, seed=0):
    batch = _paired_batch(n=n, seed=seed)
    split = np.array(["train"] * 90 + ["val"] * 30)
    return PairedTensors(batch["x_a"], batch["x_b"], np.arange(n).astype(str), split)


def test_fit_logs_the_loss_parts_and_learns_to_impute(tmp_path):
    tensors = _tensors()
    model = _model(kl_warmup_epochs=2)
    settings = FitSettings(
        max_epochs=30,
        batch_size=32,
        num_threads=1,
        enable_progress_bar=False,
        checkpoint_dir=str(tmp_path),
        early_stopping_patience=None,
    )
    result = fit(model, tensors.subset("train"), tensors.subset("val"), settings)
    history = result.history
    for column in ("train/loss", "val/loss", "val/cross_ab", "train/alignment", "kl_weight"):
        assert column in history, column
    assert history["val/cross_ab"].iloc[-1] < history["val/cross_ab"].iloc[0]

    val = tensors.subset("val")
    imputed = result.model.impute(val)["b_from_a"]
    r = [np.corrcoef(imputed[:, j], val.x_b[:, j].numpy())[0, 1] for j in range(5)]
    assert np.mean(r) > 0.5
    latent = result.model.get_latent(val)
    assert {k: v.shape for k, v in latent.items()} == {
        k: (30, 4) for k in ("z_a", "z_b", "z_joint")
    }

    dataset = LightningCheckpointDataset(filepath=str(tmp_path / "joint.ckpt"))
    dataset.save(result.model)
    loaded = dataset.load()
    assert isinstance(loaded, JointVAE)
    np.testing.assert_allclose(loaded.get_latent(val)["z_joint"], latent["z_joint"], rtol=1e-5)

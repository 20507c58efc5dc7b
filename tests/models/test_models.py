"""inVAE and the scVI-style baseline: module steps, training, inference, hyperparameters."""

from __future__ import annotations

import json

import anndata as ad
import lightning as L
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from lightning.pytorch.loggers import Logger

from omics_vae.data.tensors import CountsTensors, InMemoryBatchLoader
from omics_vae.models import (
    MODEL_REGISTRY,
    MODEL_SPECS,
    SCVIVAE,
    BaseVAE,
    InVAE,
    LossOutput,
    UnknownModelError,
    get_model_class,
    register_model,
)
from omics_vae.models.distributions import gaussian_kl
from omics_vae.models.trainer import FitSettings, fit

SMALL = {"n_hidden": 16, "n_layers": 2}
PARAMS = {
    InVAE: {
        "bio_keys": ["cell_type"],
        "tech_keys": ["batch"],
        "n_latent_bio": 4,
        "n_latent_tech": 2,
        **SMALL,
    },
    SCVIVAE: {"bio_keys": ["cell_type"], "tech_keys": ["batch"], "n_latent": 4, **SMALL},
}
LATENT_WIDTHS = {InVAE: {"z_i": 4, "z_s": 2, "z": 6}, SCVIVAE: {"z": 4}}
PARTS = {
    InVAE: {"encoder", "decoder", "dispersion", "prior_bio", "prior_tech", "classifier"},
    SCVIVAE: {"encoder", "decoder", "dispersion"},
}
MODELS = pytest.mark.parametrize("model_class", [InVAE, SCVIVAE], ids=["invae", "scvi"])


def build(model_class: type[BaseVAE], adata: ad.AnnData, **overrides) -> BaseVAE:
    torch.manual_seed(0)
    return model_class.from_anndata(adata, PARAMS[model_class], **overrides)


class MetricsHistory(Logger):
    """Keeps every logged metrics dict."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, float]] = []

    name = "history"
    version = "0"

    def log_metrics(self, metrics, step=None) -> None:
        self.rows.append(dict(metrics))

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass


def trainer(max_epochs: int, **kwargs) -> L.Trainer:
    return L.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
        **kwargs,
    )


@MODELS
def test_every_step_has_the_documented_shapes(model_class, adata):
    model = build(model_class, adata)
    tensors = model.make_tensors(adata)
    batch = tensors.slice(0, 32)
    module = model.module
    inference = module.inference(batch)
    width = LATENT_WIDTHS[model_class]["z"]
    for key in ("qz_mean", "qz_var", "z"):
        assert inference[key].shape == (32, width)
    generative = module.generative(**module.generative_inputs(batch, inference))
    assert generative["px_logits"].shape == (32, adata.n_vars)
    assert generative["log_theta"].shape == (adata.n_vars,)
    output = module.loss(batch, inference, generative, kl_weight=0.5)
    assert isinstance(output, LossOutput)
    for value in (output.loss, output.reconstruction, output.kl, *output.extra.values()):
        assert value.shape == ()
        assert torch.isfinite(value)
    # inVAE adds its label classifier's weighted cross-entropy (classifier_weight 50).
    classification = 50.0 * output.extra.get("classification", 0.0)
    torch.testing.assert_close(
        output.loss, output.reconstruction + 0.5 * output.kl + classification
    )
    assert set(module.named_parts()) == PARTS[model_class]
    per_cell = module.reconstruction_log_likelihood(batch, generative)
    assert per_cell.shape == (32,)
    torch.testing.assert_close(-per_cell.mean(), output.reconstruction, rtol=1e-5, atol=1e-3)


@MODELS
def test_training_decreases_the_loss_and_logs_epoch_metrics(model_class, adata, tensors):
    model = build(model_class, adata, kl_warmup_epochs=0, learning_rate=1e-2)
    train = InMemoryBatchLoader(tensors.subset("train"), batch_size=32, seed=0)
    val = InMemoryBatchLoader(tensors.subset("val"), batch_size=64, shuffle=False)

    history = MetricsHistory()
    fit = L.Trainer(
        max_epochs=6,
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        logger=history,
        num_sanity_val_steps=0,
    )
    fit.fit(model, train, val)
    losses = [row["train/loss"] for row in history.rows if "train/loss" in row]
    assert len(losses) == 6
    assert losses[-1] < losses[0] * 0.9
    expected = {
        "train/loss",
        "train/reconstruction",
        "train/kl",
        "kl_weight",
        "val/loss",
        "val/reconstruction",
        "val/kl",
    }
    assert expected <= set(fit.callback_metrics)
    assert all(torch.isfinite(fit.callback_metrics[k]) for k in expected)
    assert train.epoch == 5


def test_fit_warms_the_kl_weight_up_linearly_per_epoch(adata, tensors, tmp_path):
    model = build(InVAE, adata, beta_max=2.0, kl_warmup_epochs=4)
    seen = []

    class Record(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            seen.append(pl_module.kl_weight)

    settings = FitSettings(
        max_epochs=6,
        batch_size=64,
        early_stopping_patience=None,
        enable_progress_bar=False,
        checkpoint_dir=str(tmp_path),
    )
    result = fit(model, tensors.subset("train"), tensors.subset("val"), settings, [Record()])
    assert seen == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]
    assert list(result.history["kl_weight"]) == seen
    # The model's own KL weight, outside a training plan, is beta_max.
    assert model.kl_weight == 2.0
    assert build(InVAE, adata, beta_max=0.3, kl_warmup_epochs=4).kl_weight == 0.3


def test_fit_clips_every_step_s_gradient_norm_when_asked(adata, tensors, tmp_path):
    def gradient_norms(clip: float | None) -> list[float]:
        norms = []

        class Record(L.Callback):
            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
                norms.append(float(torch.linalg.vector_norm(torch.stack(
                    [torch.linalg.vector_norm(g) for g in grads]))))  # fmt: skip

        settings = FitSettings(
            max_epochs=1, batch_size=64, early_stopping_patience=None,
            enable_progress_bar=False, checkpoint_dir=str(tmp_path), gradient_clip_val=clip,
        )  # fmt: skip
        model = build(InVAE, adata)
        fit(model, tensors.subset("train"), tensors.subset("val"), settings, [Record()])
        return norms

    assert min(gradient_norms(None)) > 1.0
    clipped = gradient_norms(0.5)
    assert clipped
    assert max(clipped) <= 0.5 * (1 + 1e-5)


@MODELS
def test_get_latent_returns_posterior_means_in_eval_mode(model_class, adata, tensors):
    model = build(model_class, adata)
    model.train()
    latent = model.get_latent(tensors, batch_size=50)
    assert set(latent) == set(LATENT_WIDTHS[model_class])
    for key, width in LATENT_WIDTHS[model_class].items():
        assert latent[key].shape == (adata.n_obs, width)
        assert latent[key].dtype == np.float32
    assert model.training  # restored
    again = model.get_latent(adata, batch_size=7)
    for key in latent:
        np.testing.assert_allclose(again[key], latent[key], rtol=1e-5, atol=1e-5)
    if model_class is InVAE:
        np.testing.assert_array_equal(latent["z"], np.hstack([latent["z_i"], latent["z_s"]]))


@MODELS
def test_sparse_anndata_encodes_chunk_by_chunk_as_its_dense_copy(model_class, adata, monkeypatch):
    # Chunks of 37 cells: several, none aligned with the batches of 16.
    monkeypatch.setattr("omics_vae.models.base.ENCODING_CHUNK_ROWS", 37)
    sparse_cells = adata.copy()
    sparse_cells.layers["counts"] = sp.csr_matrix(adata.layers["counts"], dtype=np.float32)
    dense_cells = adata.copy()
    dense_cells.layers["counts"] = sparse_cells.layers["counts"].toarray()
    model = build(model_class, adata)

    from_sparse = model.get_latent(sparse_cells, batch_size=16)
    from_dense = model.get_latent(dense_cells, batch_size=16)

    for key in from_dense:
        np.testing.assert_array_equal(from_sparse[key], from_dense[key])
    np.testing.assert_array_equal(
        model.reconstruction_error(sparse_cells, batch_size=16),
        model.reconstruction_error(dense_cells, batch_size=16),
    )


@MODELS
def test_reconstruction_error_is_the_per_cell_nll_at_the_posterior_mean(
    model_class, adata, tensors
):
    model = build(model_class, adata)
    errors = model.reconstruction_error(tensors, batch_size=40)
    assert errors.shape == (adata.n_obs,)
    assert np.isfinite(errors).all()
    assert (errors > 0).all()
    model.eval()
    with torch.no_grad():
        batch = tensors.slice(0, 10)
        output = model.module(batch, sample=False)
    np.testing.assert_allclose(errors[:10].mean(), float(output.reconstruction), rtol=1e-4)
    np.testing.assert_allclose(model.reconstruction_error(adata, batch_size=64), errors, rtol=1e-5)


@MODELS
def test_hyperparameters_are_json_and_rebuild_the_same_model(model_class, adata, tmp_path):
    model = build(model_class, adata)
    hparams = json.loads(json.dumps(dict(model.hparams)))
    assert hparams["n_genes"] == adata.n_vars
    assert hparams["tech_categories"] == {"batch": ["batch0", "batch1"]}
    rebuilt = model_class(**hparams)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == expected

    tensors = model.make_tensors(adata)
    fit = L.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        enable_progress_bar=False,
        logger=False,
        default_root_dir=tmp_path,
        enable_model_summary=False,
    )
    fit.fit(model, InMemoryBatchLoader(tensors, batch_size=32))
    path = tmp_path / "model.ckpt"
    fit.save_checkpoint(path)
    loaded = model_class.load_from_checkpoint(path)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)


def test_invae_without_bio_covariates_uses_a_standard_normal_prior(adata):
    model = InVAE.from_anndata(adata, {"tech_keys": ["batch"], "n_latent_bio": 3, **SMALL})
    assert model.hparams.bio_categories == {}
    prior = model.module.prior_bio
    assert prior.is_standard_normal
    assert list(prior.parameters()) == []
    tensors = model.make_tensors(adata)
    assert tensors.bio.shape == (adata.n_obs, 0)
    batch = tensors.slice(0, 16)
    inference = model.module.inference(batch)
    generative = model.module.generative(**model.module.generative_inputs(batch, inference))
    assert generative["prior_bio_mean"] is None
    assert generative["prior_bio_var"] is None
    output = model.module.loss(batch, inference, generative)
    expected = gaussian_kl(inference["qz_mean"][:, :3], inference["qz_var"][:, :3]).mean()
    torch.testing.assert_close(output.extra["kl_bio"], expected)
    assert not model.module.prior_tech.is_standard_normal


def test_invae_total_correlation_penalty_enters_the_loss(adata, tensors):
    model = build(InVAE, adata, tc_weight=2.0)
    batch = tensors.slice(0, 32)
    torch.manual_seed(1)
    output = model.module(batch, kl_weight=1.0)
    assert "tc" in output.extra
    classification = 50.0 * output.extra["classification"]
    expected = output.reconstruction + output.kl + classification + 2.0 * output.extra["tc"]
    torch.testing.assert_close(output.loss, expected)
    assert "tc" not in build(InVAE, adata).module(batch).extra


def test_scvi_baseline_matches_scvi_tools_layer_shapes(adata):
    model = SCVIVAE.from_anndata(
        adata, {"tech_keys": ["batch"], "n_latent": 10, "n_hidden": 128, "n_layers": 2}
    )
    shapes = {k: tuple(v.shape) for k, v in model.module.state_dict().items()}
    g = adata.n_vars
    # scvi-tools VAE(n_input=g, n_batch=2, n_hidden=128, n_layers=2, n_latent=10):
    # z_encoder.encoder.fc_layers (g -> 128 -> 128), mean/var heads; decoder px_decoder
    # (10 + 2 -> 128, 128 + 2 -> 128), px_scale_decoder 128 -> g, px_r (g,).
    assert shapes["encoder.hidden.layers.0.0.weight"] == (128, g)
    assert shapes["encoder.hidden.layers.1.0.weight"] == (128, 128)
    assert shapes["encoder.mean.weight"] == (10, 128)
    assert shapes["decoder.hidden.layers.0.0.weight"] == (128, 12)
    assert shapes["decoder.hidden.layers.1.0.weight"] == (128, 130)
    assert shapes["decoder.frequencies.weight"] == (g, 128)
    assert shapes["dispersion.log_theta"] == (g,)
    n_batch_norms = sum(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules())
    assert n_batch_norms == 4


def test_from_anndata_rejects_unknown_hyperparameters(adata):
    with pytest.raises(TypeError, match=r"no hyperparameter.*'n_latnet'.*valid:.*n_latent_bio"):
        InVAE.from_anndata(adata, {"n_latnet": 3})


@pytest.mark.parametrize("name", ["adam", "adamw", "AdamW"])
def test_configure_optimizers_by_name(adata, name):
    model = build(SCVIVAE, adata, optimizer=name, learning_rate=0.01, weight_decay=0.1)
    optimizer = model.configure_optimizers()
    expected = torch.optim.AdamW if name.lower() == "adamw" else torch.optim.Adam
    assert type(optimizer) is expected
    assert optimizer.param_groups[0]["lr"] == 0.01
    assert optimizer.param_groups[0]["weight_decay"] == 0.1


def test_configure_optimizers_skips_frozen_parts_and_rejects_unknown_names(adata):
    model = build(InVAE, adata)
    for parameter in model.module.named_parts()["decoder"].parameters():
        parameter.requires_grad_(False)
    optimizer = model.configure_optimizers()
    n_trainable = sum(p.requires_grad for p in model.parameters())
    assert len(optimizer.param_groups[0]["params"]) == n_trainable
    with pytest.raises(ValueError, match="optimizer must be one of"):
        build(InVAE, adata, optimizer="sgd").configure_optimizers()


def test_registry_lookup_and_errors():
    assert get_model_class("invae") is InVAE
    assert get_model_class(SCVIVAE.registry_name) is SCVIVAE
    with pytest.raises(UnknownModelError, match=r"unknown model 'vae'; registered models: .*invae"):
        get_model_class("vae")

    class Nameless(BaseVAE):
        pass

    with pytest.raises(ValueError, match="registry_name"):
        register_model(Nameless)

    class Impostor(BaseVAE):
        registry_name = "invae"

    with pytest.raises(ValueError, match="already registered"):
        register_model(Impostor)
    assert MODEL_REGISTRY["invae"] is InVAE


def test_a_new_model_plugs_into_the_registry():
    @register_model
    class Tiny(BaseVAE):
        registry_name = "tiny_test_model"

    try:
        assert get_model_class("tiny_test_model") is Tiny
    finally:
        del MODEL_REGISTRY["tiny_test_model"]
        del MODEL_SPECS["tiny_test_model"]


def test_counts_tensors_from_a_model_use_its_categories(adata):
    model = build(InVAE, adata)
    subset = adata[adata.obs["batch"] == "batch1"].copy()
    tensors = model.make_tensors(subset)
    assert isinstance(tensors, CountsTensors)
    assert tensors.tech.shape == (subset.n_obs, 2)
    np.testing.assert_array_equal(tensors.tech[:, 1].numpy(), 1.0)


def test_lightning_checkpoints_carry_the_loader_state(adata, tmp_path):
    model = build(SCVIVAE, adata)
    loader = InMemoryBatchLoader(model.make_tensors(adata), batch_size=32, seed=5)
    fit = L.Trainer(
        max_epochs=2,
        enable_progress_bar=False,
        logger=False,
        default_root_dir=tmp_path,
        enable_model_summary=False,
    )
    fit.fit(model, loader)
    path = tmp_path / "two_epochs.ckpt"
    fit.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=False)
    states = checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert states == [{"seed": 5, "epoch": 1, "batches_yielded": len(loader)}]


@MODELS
def test_loss_and_gradients_under_bfloat16_autocast(model_class, adata, tensors):
    model = build(model_class, adata)
    model.eval()  # no dropout, so both passes see the same network
    batch = tensors.slice(0, 64)
    exact = model.module(batch, sample=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model.module(batch, sample=False)
    assert mixed.loss.dtype == torch.float32
    torch.testing.assert_close(mixed.loss, exact.loss, rtol=2e-2, atol=0.0)
    mixed.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads
    assert all(torch.isfinite(g).all() for g in grads)


def test_invae_learns_the_training_set_size_for_the_total_correlation(adata, tensors):
    model = build(InVAE, adata, tc_weight=0.5)
    trainer(1, limit_train_batches=2).fit(model, InMemoryBatchLoader(tensors, batch_size=32))
    assert model.module.dataset_size == adata.n_obs

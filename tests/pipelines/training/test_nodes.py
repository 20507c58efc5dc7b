"""Training nodes on tiny data: real Lightning fits of a few epochs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from omics_vae.datasets import LightningCheckpointDataset
from omics_vae.models import InVAE
from omics_vae.params import InvalidParametersError
from omics_vae.pipelines.training.nodes import make_model_card
from omics_vae.training.fitting import TrainingInputError, default_max_epochs
from omics_vae.training.reports import history_to_metrics, plot_loss_curves
from omics_vae.training.single_cell import train_model
from tests.conftest import validated_block


def test_train_model_returns_a_trained_model_history_and_summary(model_input, training_params):
    model, history, summary = train_model(model_input, training_params)

    assert isinstance(model, InVAE)
    assert not model.training
    assert list(history["epoch"]) == [0, 1, 2]
    assert {"train/loss", "val/loss", "val/reconstruction", "val/kl"} <= set(history.columns)
    assert np.isfinite(history["val/loss"]).all()
    assert summary["epochs"] == 3
    assert summary["bio_keys"] == ["cell_type"]
    assert summary["tech_keys"] == ["batch"]
    assert summary["best_val_loss"] == pytest.approx(history["val/loss"].min(), rel=1e-5)
    latent = model.get_latent(model_input)
    assert latent["z_i"].shape == (model_input.n_obs, 30)
    assert latent["z_s"].shape == (model_input.n_obs, 5)


def test_training_lowers_the_validation_loss(model_input, training_params):
    training_params["trainer"]["max_epochs"] = 15
    _, history, _ = train_model(model_input, training_params)
    assert history["val/reconstruction"].iloc[-1] < history["val/reconstruction"].iloc[0]


def test_scvi_baseline_trains_through_the_same_node(model_input, training_params):
    training_params["model"] = "scvi_vae"
    model, _, summary = train_model(model_input, training_params)
    assert model.registry_name == "scvi_vae"
    assert set(model.get_latent(model_input)) == {"z"}
    assert summary["model"] == "scvi_vae"


def test_same_seed_gives_the_same_weights(model_input, training_params):
    first, _, _ = train_model(model_input, training_params)
    second, _, _ = train_model(model_input, training_params)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p, a: p.update(model="nope"), "unknown model 'nope'"),
        (
            lambda p, a: p["covariates"].update(bio=["donor"]),
            r"\['donor'\] absent from model_input",
        ),
        (lambda p, a: a.layers.pop("counts"), r"no layers\['counts'\]"),
        (
            lambda p, a: a.obs.__setitem__(
                "split", a.obs["split"].astype(str).replace("val", "train")
            ),
            "'val' split has no cells",
        ),
        (lambda p, a: p["trainer"].update(batch_size=10_000), "batch_size = 10000 exceeds"),
        (
            lambda p, a: p["hyperparameters"]["invae"].update(n_latent_bio="thirty"),
            r"hyperparameters\.invae\.n_latent_bio",
        ),
    ],
)
def test_bad_input_is_refused_before_training(model_input, training_params, change, message):
    change(training_params, model_input)
    with pytest.raises((TrainingInputError, InvalidParametersError), match=message):
        train_model(model_input, training_params)


def test_model_card_records_data_parameters_and_environment(model_input, training_params):
    _, history, summary = train_model(model_input, training_params)
    card = make_model_card(summary, validated_block("training", training_params), history)

    assert card["model"] == "invae"
    assert card["data"]["fingerprint"] == summary["data_fingerprint"]
    assert card["parameters"]["trainer"]["max_epochs"] == 3
    assert card["training"]["epochs"] == 3
    assert "torch" in card["environment"]


def test_history_becomes_mlflow_metric_histories_stepped_by_epoch(model_input, training_params):
    _, history, _ = train_model(model_input, training_params)
    metrics = history_to_metrics(history)
    assert [point["step"] for point in metrics["val/loss"]] == [0, 1, 2]
    assert metrics["val/loss"][2]["value"] == pytest.approx(history["val/loss"].iloc[2])
    assert isinstance(plot_loss_curves(history), Figure)


def test_trained_model_round_trips_through_the_checkpoint_dataset(
    model_input, training_params, tmp_path
):
    model, _, _ = train_model(model_input, training_params)
    dataset = LightningCheckpointDataset(filepath=str(tmp_path / "model.ckpt"))
    dataset.save(model)
    reloaded = dataset.load()

    assert type(reloaded) is type(model)
    np.testing.assert_allclose(
        reloaded.get_latent(model_input)["z_i"], model.get_latent(model_input)["z_i"], rtol=1e-6
    )


def test_auto_epochs_follow_the_scvi_tools_rule():
    assert default_max_epochs(960) == 400
    assert default_max_epochs(20_000) == 400
    assert default_max_epochs(100_000) == 80


def test_auto_epochs_train_until_early_stopping(model_input, training_params):
    training_params["trainer"].update(max_epochs="auto", early_stopping_patience=0)
    _, history, summary = train_model(model_input, training_params)
    assert summary["epochs"] == len(history) < default_max_epochs(model_input.n_obs)

"""Processed data the model cannot be trained on is refused before training, naming the
key and a fix that works (the tests apply it)."""

from __future__ import annotations

import numpy as np
import pytest

from omics_vae.training.fitting import TrainingInputError
from omics_vae.training.single_cell import train_model
from tests.printed_fixes import apply, printed_settings


def test_cells_without_a_cell_type_train_as_unlabelled_cells(model_input, training_params, caplog):
    labels = model_input.obs["cell_type"].astype(object)
    labels.iloc[[1, 5, 8, 13]] = np.nan
    model_input.obs["cell_type"] = labels.astype("category")

    with caplog.at_level("INFO", logger="omics_vae.training.single_cell"):
        model, history, summary = train_model(model_input, training_params)

    assert "4 of 240 cells are unlabelled" in caplog.text
    assert summary["bio_keys"] == ["cell_type"]
    assert model.label_key == "cell_type"
    assert np.isfinite(history["val/loss"]).all()


def test_a_label_with_one_category_is_refused_and_the_printed_fix_trains(
    model_input, training_params
):
    model_input.obs["cell_type"] = "T"

    with pytest.raises(TrainingInputError) as refused:
        train_model(model_input, training_params)

    message = str(refused.value)
    assert "obs['cell_type'] of model_input" in message
    assert "has 1 known category ['T']" in message
    settings = printed_settings(message)
    assert settings == {"training.covariates.bio": []}
    fixed = apply(settings, {"training": training_params})["training"]
    _, history, summary = train_model(model_input, fixed)
    assert summary["bio_keys"] == []
    assert np.isfinite(history["val/loss"]).all()


def test_an_unlabelled_category_that_never_occurs_is_refused_with_a_fix(
    model_input, training_params
):
    training_params.setdefault("covariates", {})["unlabelled_category"] = "Unknown"

    with pytest.raises(TrainingInputError) as refused:
        train_model(model_input, training_params)

    message = str(refused.value)
    assert "'Unknown', which never occurs in obs['cell_type']" in message
    settings = printed_settings(message)
    assert settings == {"training.covariates.unlabelled_category": None}
    apply(settings, {"training": training_params})


def test_an_unlabelled_category_without_a_label_is_refused(model_input, training_params):
    training_params.setdefault("covariates", {}).update(bio=[], unlabelled_category="unknown")

    with pytest.raises(TrainingInputError) as refused:
        train_model(model_input, training_params)

    assert printed_settings(str(refused.value)) == {"training.covariates.unlabelled_category": None}


def test_a_batch_larger_than_the_training_cells_prints_one_that_trains(
    model_input, training_params
):
    small = model_input[model_input.obs["split"] != "train"].copy()
    split = small.obs["split"].astype(str).to_numpy()
    split[:20] = "train"
    small.obs["split"] = split
    training_params["trainer"]["batch_size"] = 64

    with pytest.raises(TrainingInputError) as refused:
        train_model(small, training_params)

    message = str(refused.value)
    assert "batch_size = 64 exceeds the 20 training cells of model_input" in message
    settings = printed_settings(message)
    assert settings == {"training.trainer.batch_size": 20}
    fixed = apply(settings, {"training": training_params})["training"]
    assert train_model(small, fixed)[2]["n_cells"]["train"] == 20


def test_an_encoder_that_reads_labels_refuses_unlabelled_cells_with_a_fix(
    model_input, training_params
):
    labels = model_input.obs["cell_type"].astype(object)
    labels.iloc[[1, 5]] = np.nan
    model_input.obs["cell_type"] = labels.astype("category")
    training_params.setdefault("hyperparameters", {})["invae"] = {"encode_labels": True}

    with pytest.raises(TrainingInputError) as refused:
        train_model(model_input, training_params)

    settings = printed_settings(str(refused.value))
    assert settings == {"training.hyperparameters.invae.encode_labels": False}
    fixed = apply(settings, {"training": training_params})["training"]
    model, _, _ = train_model(model_input, fixed)
    assert model.label_key == "cell_type"

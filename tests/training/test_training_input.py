"""Processed data the model cannot be trained on is refused before training, naming the
key and a fix that works (the tests apply it)."""

from __future__ import annotations

import numpy as np
import pytest

from omics_vae.training.fitting import TrainingInputError
from omics_vae.training.single_cell import PARAMETERS_FILE, train_model
from tests.printed_fixes import apply, printed_settings


def test_cells_without_a_cell_type_are_counted_and_the_printed_fix_trains(
    model_input, training_params
):
    labels = model_input.obs["cell_type"].astype(object)
    labels.iloc[[1, 5, 8, 13]] = np.nan
    model_input.obs["cell_type"] = labels.astype("category")

    with pytest.raises(TrainingInputError) as refused:
        train_model(model_input, training_params)

    message = str(refused.value)
    assert "obs['cell_type'] of model_input, a covariate of invae" in message
    assert "(training.covariates.bio), has no value for 4 of 240 cells" in message
    assert f"set training.covariates.bio: [] in {PARAMETERS_FILE}" in message
    settings = printed_settings(message)
    assert settings == {"training.covariates.bio": []}

    fixed = apply(settings, {"training": training_params})["training"]
    _, history, summary = train_model(model_input, fixed)

    assert summary["bio_keys"] == []
    assert summary["tech_keys"] == ["batch"]
    assert np.isfinite(history["val/loss"]).all()


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

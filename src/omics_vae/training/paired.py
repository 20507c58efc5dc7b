"""Training the paired model (joint VAE) on the paired model input, with the single-cell
training's own loop, plan and phases (``fitting.fit_model``)."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import pandas as pd
from anndata import AnnData

from omics_vae.data.fingerprint import fingerprint_anndata
from omics_vae.data.paired import PairedInputError, check_paired_anndata, platform_names
from omics_vae.models import BaseVAE, get_model_class
from omics_vae.params import validate_section
from omics_vae.schemas.paired_training import PairedTrainingParams
from omics_vae.training.fitting import fit_model
from omics_vae.training.identity import training_identity

logger = logging.getLogger(__name__)

PARAMETERS_FILE = "conf/local/parameters_paired.yml"  # the user's own settings


def paired_config(params: dict[str, Any]) -> PairedTrainingParams:
    return validate_section("paired.training", PairedTrainingParams, params)


def train_joint_model(
    paired_model_input: AnnData, params: dict[str, Any], data_fingerprint: str | None = None
) -> tuple[BaseVAE, pd.DataFrame, dict[str, Any]]:
    """Train the paired model on the ``train`` samples, validating on ``val``, with the
    single-cell training's own loop, plan and phases (``fit_model``).

    Args:
        paired_model_input: paired_processing output (scaled values in ``X``).
        params: The ``paired.training`` block.
        data_fingerprint: The input's content hash, when the caller has it already.

    Returns:
        The model, the per-epoch history and a run summary.
    """
    config = paired_config(params)
    check_paired_anndata(paired_model_input, "paired_model_input")
    counts = paired_model_input.obs["split"].value_counts()
    if config.trainer.batch_size > counts.get("train", 0):
        raise PairedInputError(
            f"paired.training.trainer.batch_size = {config.trainer.batch_size} exceeds the "
            f"{counts.get('train', 0)} training samples. Lower it in {PARAMETERS_FILE}."
        )
    # Seeded before the model exists, so its initial weights are reproducible too.
    L.seed_everything(config.seed, workers=True, verbose=False)
    model = get_model_class(config.model).from_anndata(
        paired_model_input,
        {
            **config.model_hyperparameters,
            "learning_rate": config.optimizer.learning_rate,
            "weight_decay": config.optimizer.weight_decay,
            "optimizer": config.optimizer.name,
        },
    )
    data_fingerprint = data_fingerprint or fingerprint_anndata(paired_model_input, None)
    identity = training_identity(paired_model_input, data_fingerprint, config)
    model, history, facts = fit_model(
        model, model.make_tensors(paired_model_input), config, "paired.training", identity
    )
    summary = {
        **facts,
        "platforms": platform_names(paired_model_input),
        "data_fingerprint": data_fingerprint,
        "n_samples": {str(k): int(v) for k, v in counts.items()},
        "n_features": {"a": int(model.hparams.n_features_a), "b": int(model.hparams.n_features_b)},
    }
    return model, history, summary

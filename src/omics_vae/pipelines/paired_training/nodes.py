"""Nodes of the paired_training pipeline: fit the joint VAE on the paired model input."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import pandas as pd
from anndata import AnnData

from omics_vae.data.fingerprint import environment_versions, fingerprint_anndata
from omics_vae.data.paired import PairedInputError, check_paired_anndata, platform_names
from omics_vae.models import BaseVAE, get_model_class
from omics_vae.models.trainer import FitSettings, fit
from omics_vae.params import validate_section
from omics_vae.pipelines.paired_training.params import PairedTrainingParams
from omics_vae.pipelines.training.nodes import default_max_epochs

logger = logging.getLogger(__name__)

PARAMETERS_FILE = "conf/base/parameters_paired.yml"


def _config(params: dict[str, Any]) -> PairedTrainingParams:
    return validate_section("paired.training", PairedTrainingParams, params)


def train_joint_model(
    paired_model_input: AnnData, params: dict[str, Any]
) -> tuple[BaseVAE, pd.DataFrame, dict[str, Any]]:
    """Train the paired model on the ``train`` samples, validating on ``val``.

    Args:
        paired_model_input: paired_processing output (scaled values in ``X``).
        params: The ``paired.training`` block.

    Returns:
        The model (best validation epoch), the per-epoch history and a run summary.
    """
    config = _config(params)
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
            **config.hyperparameters,
            "learning_rate": config.optimizer.learning_rate,
            "weight_decay": config.optimizer.weight_decay,
            "optimizer": config.optimizer.name,
        },
    )
    tensors = model.make_tensors(paired_model_input)
    train, val = tensors.subset("train"), tensors.subset("val")
    trainer = config.trainer.model_dump()
    if trainer["max_epochs"] == "auto":
        trainer["max_epochs"] = default_max_epochs(train.n_obs)
    settings = FitSettings(
        **trainer,
        seed=config.seed,
        checkpoint_dir=f"{config.checkpoint_dir}/{config.model}",
        resume_from=config.resume_from,
    )
    result = fit(model, train, val, settings)
    logger.info(
        "Trained %s for %d epochs in %.1f s; best val/loss %.4f",
        config.model,
        result.epochs,
        result.wall_time_s,
        result.best_score,
    )
    summary = {
        "model": config.model,
        "platforms": platform_names(paired_model_input),
        "epochs": result.epochs,
        "best_val_loss": result.best_score,
        "wall_time_s": round(result.wall_time_s, 3),
        "resumed_from": str(result.resumed_from) if result.resumed_from else None,
        "lightning_run_dir": str(result.run_dir),
        "data_fingerprint": fingerprint_anndata(paired_model_input, layer=None),
        "n_samples": {str(k): int(v) for k, v in counts.items()},
        "n_features": {"a": int(model.hparams.n_features_a), "b": int(model.hparams.n_features_b)},
    }
    return result.model, result.history, summary


def make_paired_model_card(
    summary: dict[str, Any], params: dict[str, Any], history: pd.DataFrame
) -> dict[str, Any]:
    """A YAML-able record of what was trained, on what data, and how well."""
    config = _config(params)
    final = history.iloc[-1].to_dict() if len(history) else {}
    return {
        "model": config.model,
        "parameters": config.model_dump(mode="json"),
        "data": {
            "fingerprint": summary["data_fingerprint"],
            "platforms": summary["platforms"],
            "n_samples": summary["n_samples"],
            "n_features": summary["n_features"],
        },
        "training": {
            "epochs": summary["epochs"],
            "best_val_loss": summary["best_val_loss"],
            "final_metrics": {k: float(v) for k, v in final.items() if k != "epoch"},
            "wall_time_s": summary["wall_time_s"],
            "resumed_from": summary["resumed_from"],
        },
        "environment": environment_versions(),
    }

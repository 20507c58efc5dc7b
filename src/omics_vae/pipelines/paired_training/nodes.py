"""Nodes of the paired_training pipeline: fit the joint VAE on the paired model input, or
reuse an identical model from the MLflow store (``omics_vae.store``)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from anndata import AnnData

from omics_vae.data.fingerprint import fingerprint_anndata
from omics_vae.models import BaseVAE
from omics_vae.schemas.paired_training import PairedTrainingParams
from omics_vae.store.reuse import PAIRED_ARTIFACTS, ModelStore, retrieve_or_train
from omics_vae.training.identity import training_fingerprint
from omics_vae.training.paired import train_joint_model
from omics_vae.training.reports import model_card


def train_or_reuse_joint_model(
    paired_model_input: AnnData,
    params: PairedTrainingParams,
    force_retrain: bool = False,
    model_store: ModelStore | None = None,
) -> tuple[BaseVAE, pd.DataFrame, dict[str, Any]]:
    """The paired training node: reuse an identical finished model found in MLflow by its
    training fingerprint, or train one."""
    data_fingerprint = fingerprint_anndata(paired_model_input, layer=None)
    return retrieve_or_train(
        lambda: train_joint_model(paired_model_input, params, data_fingerprint),
        fingerprint=training_fingerprint(paired_model_input, data_fingerprint, params),
        artifacts=PAIRED_ARTIFACTS,
        store=model_store,
        force_retrain=force_retrain,
        dry_run=params.dry_run,
    )


def make_paired_model_card(
    summary: dict[str, Any], params: PairedTrainingParams, history: pd.DataFrame
) -> dict[str, Any]:
    """A YAML-able record of what was trained, on what data, and how well."""
    data = {
        "fingerprint": summary["data_fingerprint"],
        "platforms": summary["platforms"],
        "n_samples": summary["n_samples"],
        "n_features": summary["n_features"],
    }
    return model_card(params, summary, history, data)

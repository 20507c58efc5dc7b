"""Nodes of the training pipeline: fit a registered model on the processed cells, or reuse
an identical one from the MLflow store; the model card, curves and MLflow metrics.

The computation lives in the Kedro-free ``omics_vae.training`` (fitting, identity,
reports) and ``omics_vae.store`` (train once).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from anndata import AnnData

from omics_vae.models import BaseVAE
from omics_vae.schemas.training import TrainingParams
from omics_vae.store.reuse import SINGLE_CELL_ARTIFACTS, ModelStore, retrieve_or_train
from omics_vae.training.identity import fingerprint_of
from omics_vae.training.reports import history_to_metrics, model_card, plot_loss_curves
from omics_vae.training.single_cell import checked_identity, train_model, with_labels_added

__all__ = [
    "history_to_metrics",
    "make_model_card",
    "package_model_for_mlflow",
    "plot_loss_curves",
    "train_or_reuse_model",
]


def train_or_reuse_model(
    model_input: AnnData,
    params: TrainingParams,
    force_retrain: bool = False,
    model_store: ModelStore | None = None,
    new_labels: pd.DataFrame | None = None,
) -> tuple[BaseVAE, pd.DataFrame, dict[str, Any]]:
    """The training node: reuse a finished model trained on the same data with the same
    parameters (found in MLflow by its training fingerprint), or train one.

    Args:
        model_input: Processed cells (see :func:`train_model`).
        params: The ``training`` parameter block.
        force_retrain: Train even when an identical model exists.
        model_store: The MLflow store searched for an identical model (the catalog's
            ``trained_models``); ``None``: train.
        new_labels: Labels an expert added (``cell_id``, ``label``), merged into the
            label column first; ``None`` or empty: none.
    """
    model_input = with_labels_added(model_input, params, new_labels)
    identity = checked_identity(model_input, params)
    return retrieve_or_train(
        lambda: train_model(model_input, params, identity["data"]),
        fingerprint=fingerprint_of(identity),
        artifacts=SINGLE_CELL_ARTIFACTS,
        store=model_store,
        force_retrain=force_retrain,
        dry_run=params.dry_run,
    )


def make_model_card(
    summary: dict[str, Any], params: TrainingParams, history: pd.DataFrame
) -> dict[str, Any]:
    """A small YAML-able record of what was trained, on what, and how well."""
    data = {
        "fingerprint": summary["data_fingerprint"],
        "n_cells": summary["n_cells"],
        "n_genes": summary["n_genes"],
    }
    card = model_card(params, summary, history, data)
    card["covariates"] = {"bio": summary["bio_keys"], "tech": summary["tech_keys"]}
    if summary.get("labels"):
        card["labels"] = summary["labels"]
    return card


def package_model_for_mlflow(model: BaseVAE) -> BaseVAE:
    """The trained model on the CPU in eval mode, as ``mlflow.pytorch`` stores it."""
    return model.cpu().eval()

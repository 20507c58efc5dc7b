"""Posterior-mean latents of every processed cell, their table and info record."""

from __future__ import annotations

import logging
import time
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
from anndata import AnnData

from omics_vae.data.fingerprint import environment_versions, fingerprint_anndata
from omics_vae.errors import ProjectError
from omics_vae.models import BaseVAE, get_model_class
from omics_vae.processing.annotations import (
    COUNTS_LAYER,
    label_probabilities_key,
    predicted_label_columns,
)
from omics_vae.processing.new_labels import with_new_labels
from omics_vae.schemas.embedding import EmbeddingParams
from omics_vae.schemas.training import TrainingParams, default_hyperparameters

logger = logging.getLogger(__name__)


class EmbeddingInputError(ProjectError, ValueError):
    """The model and the data it is asked to embed do not belong together."""


def embed_cells(
    model_input: AnnData,
    model: BaseVAE,
    model_card: dict[str, Any],
    config: EmbeddingParams,
    new_labels: pd.DataFrame | None = None,
) -> tuple[AnnData, pd.DataFrame, dict[str, Any]]:
    """Posterior-mean latents of every cell of every split.

    Args:
        model_input: The processed cells.
        model: A trained model: the catalog's checkpoint or, with ``embedding.model_uri``,
            a registered version (see ``omics_vae.hooks.RegisteredModelHooks``).
        model_card: Its card (training parameters, data; ``model_uri`` when registered).
        config: The ``embedding`` parameter block.
        new_labels: Labels an expert added (``cell_id``, ``label``), written into the
            model's label column of the embeddings' obs as training merged them.

    Returns:
        The embeddings AnnData (obs of the processed cells, ``obsm["X_<model>"]`` the
        batch-corrected latent, ``obsm["X_<model>_technical"]`` where the model has one,
        ``obs["reconstruction_error"]``, ``uns["embedding"]``), the corrected latent as a
        table (cell id + dimensions) and an info record of what made it.
    """
    check_model_matches_data(model, model_input)
    model_input = with_new_labels(model_input, new_labels, model.label_key)
    started = time.perf_counter()

    latents = model.get_latent(model_input, batch_size=config.batch_size, counts_layer=COUNTS_LAYER)
    corrected_key, technical_key = latent_keys(model)
    obsm = {corrected_key: latents[model.corrected_latent]}
    if technical_key:
        obsm[technical_key] = latents[model.technical_latent]
    embeddings = ad.AnnData(
        X=np.zeros((model_input.n_obs, 0), dtype=np.float32),
        obs=model_input.obs.copy(),
        obsm=obsm,
    )
    add_predicted_labels(embeddings, model, model_input, config.batch_size)
    if config.reconstruction_error:
        embeddings.obs["reconstruction_error"] = model.reconstruction_error(
            model_input, batch_size=config.batch_size, counts_layer=COUNTS_LAYER
        )
    embeddings.uns["embedding"] = _embedding_record(
        model, model_input, model_card, corrected_key, technical_key
    )
    wall_time = time.perf_counter() - started
    logger.info(
        "Embedded %d cells with %s into %s (%d dims) in %.1f s",
        model_input.n_obs,
        model.registry_name,
        corrected_key,
        obsm[corrected_key].shape[1],
        wall_time,
    )
    info = embedding_info(model, model_input, model_card, embeddings.uns["embedding"], wall_time)
    return embeddings, latent_table(embeddings, corrected_key), info


def add_predicted_labels(
    embeddings: AnnData, model: BaseVAE, model_input: AnnData, batch_size: int
) -> None:
    """``obs["predicted_<label>"]`` and its probability for every cell, and the
    probability of every category in ``obsm["predicted_<label>_probabilities"]``, from
    the model's label classifier (models trained with labels; nothing otherwise)."""
    label_key = model.label_key
    if label_key is None:
        return
    labels, probabilities = model.predict_labels(
        model_input, batch_size=batch_size, counts_layer=COUNTS_LAYER
    )
    label_column, probability_column = predicted_label_columns(label_key)
    categories = model.encoders["bio"].categories[label_key]
    embeddings.obs[label_column] = pd.Categorical(labels, categories=categories)
    embeddings.obs[probability_column] = probabilities.max(axis=1).astype(np.float32)
    embeddings.obsm[label_probabilities_key(label_key)] = probabilities.astype(np.float32)


def latent_keys(model: BaseVAE) -> tuple[str, str | None]:
    """obsm keys of the corrected latent and of the technical one (None if absent)."""
    corrected = f"X_{model.registry_name}"
    technical = f"X_{model.registry_name}_technical" if model.technical_latent else None
    return corrected, technical


def check_model_matches_data(model: BaseVAE, model_input: AnnData) -> None:
    """Refuse to embed data whose genes or covariates the model was not trained on."""
    n_genes = int(model.hparams["n_genes"])
    if n_genes != model_input.n_vars:
        raise EmbeddingInputError(
            f"The model was trained on {n_genes} genes but model_input has "
            f"{model_input.n_vars}. Embed the processed data version it was trained on "
            "(kedro run --pipelines embedding --load-versions model_input:<version>), or "
            "train a model on this data."
        )
    if COUNTS_LAYER not in model_input.layers:
        raise EmbeddingInputError(
            f"model_input has no layers['{COUNTS_LAYER}']; run the data_processing pipeline."
        )
    # Labels (biological covariates) are optional: the encoder never reads them.
    for key in model.hparams.get("tech_categories") or {}:
        if key not in model_input.obs:
            raise EmbeddingInputError(
                f"The model needs obs['{key}'] (technical covariate), absent from "
                f"model_input (obs columns: {sorted(model_input.obs.columns)})."
            )


def latent_table(embeddings: AnnData, key: str) -> pd.DataFrame:
    """The corrected latent as a flat table, for people who leave Python."""
    values = embeddings.obsm[key]
    table = pd.DataFrame(values, columns=[f"{key}_{i}" for i in range(values.shape[1])])
    table.insert(0, "cell_id", embeddings.obs_names.to_numpy())
    return table


def embedding_info(
    model: BaseVAE,
    model_input: AnnData,
    model_card: dict[str, Any],
    embedding: dict[str, Any],
    wall_time: float,
) -> dict[str, Any]:
    """What made the embedding: model, data, non-default parameters, seed, packages.

    The Kedro versions of the checkpoint and of the data are added by the project's
    lineage hook, which knows them; a node only sees the loaded objects.
    """
    training = model_card.get("parameters", {})
    return {
        "model": model.registry_name,
        "embedding": embedding,
        "data": {
            "fingerprint": fingerprint_anndata(model_input, COUNTS_LAYER),
            "trained_on_fingerprint": model_card.get("data", {}).get("fingerprint"),
            "n_cells": int(model_input.n_obs),
            "n_genes": int(model_input.n_vars),
        },
        "training_parameters_changed": changed_from_defaults(training),
        "seed": training.get("seed"),
        "model_uri": model_card.get("model_uri"),
        "sweep_variant": None,
        "wall_time_s": round(wall_time, 3),
        "environment": environment_versions(),
    }


def changed_from_defaults(training: dict[str, Any]) -> dict[str, Any]:
    """Training settings that differ from the defaults, as dotted keys.

    Model hyperparameters are compared with the defaults the chosen model declares,
    everything else with the training schema's defaults.
    """
    if not training:
        return {}
    settings = {key: value for key, value in training.items() if key != "hyperparameters"}
    defaults = TrainingParams().model_dump(mode="json")
    changed = _differences(_flatten(settings), _flatten(defaults))
    model = training.get("model", defaults["model"])
    chosen = (training.get("hyperparameters") or {}).get(model, {})
    model_defaults = default_hyperparameters(get_model_class(model))
    changed.update(
        {f"hyperparameters.{model}.{k}": v for k, v in _differences(chosen, model_defaults).items()}
    )
    return changed


def _embedding_record(
    model: BaseVAE,
    model_input: AnnData,
    model_card: dict[str, Any],
    latent_key: str,
    technical_key: str | None,
) -> dict[str, Any]:
    """``uns["embedding"]``: the model, its latent keys and the data's batch and labels."""
    covariates = model_card.get("parameters", {}).get("covariates") or {}
    processing = model_input.uns.get("data_processing", {}).get("params", {})
    cell_type_key = processing.get("cell_type_key")
    bio_covariates = model.hparams.get("bio_categories") or {}
    label_key = model.label_key
    return {
        "model": model.registry_name,
        "latent_key": latent_key,
        "technical_key": technical_key,
        "batch_key": processing.get("batch_key"),
        "cell_type_key": cell_type_key,
        "supervised": bool(cell_type_key and cell_type_key in bio_covariates),
        # The label the model predicts (obs["predicted_<label_key>"]), if any.
        "label_key": label_key or "",
        # The value that marked cells as unlabelled in training (h5ad keeps no None).
        "unlabelled_category": covariates.get("unlabelled_category") or "",
    }


def _differences(values: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    missing = object()
    return {key: value for key, value in values.items() if defaults.get(key, missing) != value}


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat

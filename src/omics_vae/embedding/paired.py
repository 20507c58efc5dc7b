"""The shared latent of every paired sample (from A, from B, joint) and each platform
imputed from the other, back in the data's original units; their tables and record."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from omics_vae.data.fingerprint import environment_versions, fingerprint_anndata
from omics_vae.data.paired import (
    ROLES,
    TRANSFORMED_LAYER,
    FeatureScaler,
    check_paired_anndata,
    inverse_log_transform,
    platform_names,
    platform_view,
    scalers_from_record,
)
from omics_vae.models import BaseVAE
from omics_vae.schemas.paired_embedding import PairedEmbeddingParams

logger = logging.getLogger(__name__)

SCALED_LAYER = "scaled"
# Which decoded output imputes each platform: from the other platform's latent only.
IMPUTATION_KEYS = {"a": "a_from_b", "b": "b_from_a"}
LATENT_KEYS = ("z_a", "z_b", "z_joint")


def check_scalers_match(paired_model_input: AnnData, paired_scalers: dict[str, Any]) -> None:
    """Refuse a scaler record whose features are not the model input's."""
    scalers = scalers_from_record(paired_scalers, "paired_scalers")
    for role in ROLES:
        features = platform_view(paired_model_input, role).var["feature"]
        scalers[role].check_features(list(features), f"paired_scalers (platform {role})")


def to_original_units(values: np.ndarray, record: dict[str, Any]) -> dict[str, np.ndarray]:
    """Scaled values of one platform -> ``{"transformed": ..., "original": ...}``.

    ``transformed`` undoes the scaler (log units); ``original`` also undoes the log. A
    library normalisation cannot be undone for an imputed sample (its own total is not
    known), so with ``normalize_total`` the original units are the normalised ones.
    """
    scaler = FeatureScaler.from_dict(record["scaler"])
    transformed = scaler.inverse_transform(values)
    original = inverse_log_transform(transformed, record["log"], record["log_offset"])
    return {"transformed": transformed, "original": original}


def embed_paired_samples(
    paired_model_input: AnnData,
    paired_model: BaseVAE,
    paired_scalers: dict[str, Any],
    config: PairedEmbeddingParams,
) -> tuple[AnnData, AnnData]:
    """Latents and imputations of every sample.

    Args:
        paired_model_input: paired_processing output.
        paired_model: The trained joint VAE.
        paired_scalers: The scaler record written with ``paired_model_input``.
        config: The ``paired.embedding`` block.

    Returns:
        ``(embeddings, imputed)``: ``embeddings`` has ``X`` = joint latent and ``obsm``
        ``z_a``, ``z_b``, ``z_joint``; ``imputed`` has the model input's variables, ``X``
        each platform imputed from the other in original units, and layers
        ``transformed`` and ``scaled``.
    """
    check_paired_anndata(paired_model_input, "paired_model_input")
    check_scalers_match(paired_model_input, paired_scalers)
    latent = paired_model.get_latent(paired_model_input, batch_size=config.batch_size)
    decoded = paired_model.impute(paired_model_input, batch_size=config.batch_size)

    obs = paired_model_input.obs[["split"]].copy()
    embeddings = AnnData(X=latent["z_joint"], obs=obs)
    for key, values in latent.items():
        embeddings.obsm[key] = values
    imputed = _imputed(paired_model_input, decoded, paired_scalers, obs.copy())
    logger.info("Embedded %d samples; imputed both platforms", embeddings.n_obs)
    return embeddings, imputed


def paired_latent_table(paired_embeddings: AnnData) -> pd.DataFrame:
    """One row per sample: ``sample_id``, ``split`` and every latent dimension."""
    table = pd.DataFrame(
        {"sample_id": paired_embeddings.obs_names, "split": paired_embeddings.obs["split"]}
    )
    blocks = [
        pd.DataFrame(
            paired_embeddings.obsm[key],
            columns=[f"{key}_{i}" for i in range(paired_embeddings.obsm[key].shape[1])],
        )
        for key in LATENT_KEYS
    ]
    return pd.concat([table.reset_index(drop=True), *blocks], axis=1)


def imputed_tables(paired_imputed: AnnData) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each imputed platform as a table in original units, the sample ID first."""
    tables = []
    for role in ROLES:
        view = platform_view(paired_imputed, role)
        table = pd.DataFrame(np.asarray(view.X), columns=list(view.var["feature"]))
        table.insert(0, "sample_id", list(view.obs_names))
        tables.append(table)
    return tables[0], tables[1]


def paired_embedding_info(
    paired_embeddings: AnnData,
    paired_model_input: AnnData,
    paired_model_card: dict[str, Any],
    config: PairedEmbeddingParams,
) -> dict[str, Any]:
    """The record beside the embedding: which model and data made it, and what it holds."""
    names = platform_names(paired_model_input)
    return {
        "model": paired_model_card["model"],
        "model_data_fingerprint": paired_model_card["data"]["fingerprint"],
        "data": {
            "fingerprint": fingerprint_anndata(paired_model_input, layer=None),
            "n_samples": int(paired_model_input.n_obs),
            "platforms": names,
        },
        "latents": {
            "z_a": f"posterior mean from {names['a']} only",
            "z_b": f"posterior mean from {names['b']} only",
            "z_joint": "product of both posteriors",
            "dimensions": int(paired_embeddings.obsm["z_joint"].shape[1]),
        },
        "imputation_units": "original (scaling and log undone; library-normalised if "
        "normalize_total was set)",
        "parameters": config.model_dump(mode="json"),
        "environment": environment_versions(),
    }


def _imputed(
    paired_model_input: AnnData,
    decoded: dict[str, np.ndarray],
    paired_scalers: dict[str, Any],
    obs: pd.DataFrame,
) -> AnnData:
    """Each platform decoded from the other's latent, in original, log and scaled units."""
    scaled, transformed, original = [], [], []
    for role in ROLES:
        units = to_original_units(decoded[IMPUTATION_KEYS[role]], paired_scalers["platforms"][role])
        scaled.append(decoded[IMPUTATION_KEYS[role]])
        transformed.append(units["transformed"])
        original.append(units["original"])
    imputed = AnnData(
        X=np.hstack(original).astype(np.float32),
        obs=obs,
        var=paired_model_input.var.copy(),
        layers={
            TRANSFORMED_LAYER: np.hstack(transformed).astype(np.float32),
            SCALED_LAYER: np.hstack(scaled).astype(np.float32),
        },
    )
    names = platform_names(paired_model_input)
    imputed.uns["imputation"] = {
        role: f"{names[role]} imputed from {names[other]}"
        for role, other in (("a", "b"), ("b", "a"))
    }
    return imputed

"""The evaluated cells, made once: the embeddings checked against the processed data they
were made from, the cells selected and subsampled, and the baselines added."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from omics_vae.evaluation.baselines import baseline_embeddings
from omics_vae.evaluation.cells import (
    LIBRARY_SIZE,
    PARAMETERS_FILE,
    PCA_KEY,
    RECORD_KEY,
    SUBSAMPLE_COLUMN,
    EvaluationInputError,
)
from omics_vae.processing.annotations import COUNTS_LAYER
from omics_vae.schemas.evaluation import EvaluationParams

logger = logging.getLogger(__name__)

_REQUIRED_RECORD_KEYS = ("model", "latent_key", "batch_key")
_EXAMPLES = 5


def prepare_evaluation_cells(
    embeddings: AnnData, model_input: AnnData, config: EvaluationParams
) -> AnnData:
    """Checks that the embeddings belong to the processed data and adds the baselines.

    Args:
        embeddings: Output of the embedding pipeline: the cells' ``obs``, the model's
            latent(s) in ``obsm`` and ``uns["embedding"]`` naming them and the obs keys.
        model_input: The processed cells the embedding was made from (log-normalised
            expression of the highly variable genes in ``X``).
        config: The ``evaluation`` parameters.

    Returns:
        The evaluated cells (the splits in ``config``) with ``obs`` from the embeddings
        plus ``in_subsample`` and ``library_size`` (counts of the modelled genes, when
        ``model_input`` has ``layers["counts"]``); ``obsm`` with the model's latent(s),
        the unintegrated PCA (``X_pca``) and, when asked for, Harmony
        (``X_harmony``); ``uns["evaluation"]`` describing them. ``X`` is empty.

    Raises:
        EvaluationInputError: A key named in ``uns["embedding"]`` is missing, the cells
            differ from ``model_input``'s, or a requested split does not exist.
    """
    record = embedding_record(embeddings)
    positions = matching_positions(embeddings, model_input)
    selected = selected_cells(embeddings.obs, config.splits) & labelled_cells(
        embeddings.obs, record
    )

    obs = embeddings.obs.loc[selected].copy()
    if COUNTS_LAYER in model_input.layers:
        counts = model_input.layers[COUNTS_LAYER][positions[selected]]
        obs[LIBRARY_SIZE] = np.asarray(counts.sum(axis=1), dtype=np.float64).ravel()
    obsm = {
        key: finite_latent(embeddings, key)[selected]
        for key in (record["latent_key"], record["technical_key"])
        if key
    }
    baselines, baseline_names = baseline_embeddings(
        model_input, positions[selected], obs, record["batch_key"], config
    )
    obsm |= baselines
    embedding_keys = {record["model"]: record["latent_key"], **baseline_names}

    obs[SUBSAMPLE_COLUMN] = stratified_subsample(obs, record, config.max_cells, config.seed)
    cells = AnnData(np.zeros((len(obs), 0), dtype=np.float32), obs=obs, obsm=obsm)
    cells.uns[RECORD_KEY] = {
        **record,
        "embeddings": embedding_keys,
        "pre_integrated_key": PCA_KEY,
        "splits": config.splits,
    }
    logger.info(
        "Evaluating %s on %d cells (%s), %d of them in the benchmark subsample; embeddings: %s",
        record["model"],
        cells.n_obs,
        "splits " + ", ".join(config.splits) if config.splits else "all splits",
        int(obs[SUBSAMPLE_COLUMN].sum()),
        ", ".join(embedding_keys),
    )
    return cells


def embedding_record(embeddings: AnnData) -> dict[str, Any]:
    """``uns["embedding"]`` checked against the AnnData it describes."""
    record = dict(embeddings.uns.get("embedding") or {})
    missing = [key for key in _REQUIRED_RECORD_KEYS if not record.get(key)]
    if missing:
        raise EvaluationInputError(
            f"embeddings.uns['embedding'] lacks {missing} (it has {sorted(record)}). "
            "Make the embeddings with the embedding pipeline: kedro run --pipelines embedding."
        )
    record = {
        "model": str(record["model"]),
        "latent_key": str(record["latent_key"]),
        # h5ad files may hold "" where the writer had None.
        "technical_key": record.get("technical_key") or None,
        "batch_key": str(record["batch_key"]),
        "cell_type_key": record.get("cell_type_key") or None,
        "supervised": bool(record.get("supervised", False)),
        "label_key": record.get("label_key") or None,
        "unlabelled_category": record.get("unlabelled_category") or None,
    }
    obs_hint = (
        " Re-run the embedding pipeline on data processed with that key, or fix "
        "data_processing.{field} in conf/local/parameters_data_processing.yml."
    )
    for field, slot, names, hint in (
        ("latent_key", "obsm", list(embeddings.obsm), ""),
        ("technical_key", "obsm", list(embeddings.obsm), ""),
        ("batch_key", "obs", list(embeddings.obs.columns), obs_hint),
        ("cell_type_key", "obs", list(embeddings.obs.columns), obs_hint),
    ):
        key = record[field]
        if key is not None and key not in names:
            raise EvaluationInputError(
                f"uns['embedding']['{field}'] names {slot}['{key}'], absent from the "
                f"embeddings ({slot} keys: {sorted(names)}).{hint.format(field=field)}"
            )
    return record


def matching_positions(embeddings: AnnData, model_input: AnnData) -> np.ndarray:
    """Row of each embedded cell in ``model_input``; the two must hold the same cells."""
    if embeddings.obs_names.equals(model_input.obs_names):
        return np.arange(model_input.n_obs)
    not_processed = embeddings.obs_names.difference(model_input.obs_names)
    not_embedded = model_input.obs_names.difference(embeddings.obs_names)
    if len(not_processed) or len(not_embedded):
        raise EvaluationInputError(
            f"The embeddings ({embeddings.n_obs} cells) belong to another version of the "
            f"processed data than model_input ({model_input.n_obs} cells): "
            f"{len(not_processed)} embedded cells are not in model_input "
            f"(e.g. {list(not_processed[:_EXAMPLES])}) and {len(not_embedded)} processed "
            f"cells were not embedded (e.g. {list(not_embedded[:_EXAMPLES])}). Re-run the "
            "embedding on the current data (kedro run --pipelines embedding), or evaluate "
            "against the data version the embedding was made from: kedro run --pipelines "
            "evaluation --load-versions model_input:<version>."
        )
    return model_input.obs_names.get_indexer(embeddings.obs_names)


def selected_cells(obs: pd.DataFrame, splits: list[str] | None) -> np.ndarray:
    """Boolean mask of the cells in ``splits`` (every cell when None)."""
    if splits is None:
        return np.ones(len(obs), dtype=bool)
    if "split" not in obs:
        raise EvaluationInputError(
            f"evaluation.splits = {splits} but the embeddings have no obs['split']. Set "
            f"evaluation.splits to null in {PARAMETERS_FILE} to evaluate every cell."
        )
    present = set(obs["split"].astype(str))
    unknown = sorted(set(splits) - present)
    if unknown:
        raise EvaluationInputError(
            f"evaluation.splits names {unknown}, which no cell belongs to (splits present: "
            f"{sorted(present)}). Fix evaluation.splits in {PARAMETERS_FILE}."
        )
    return obs["split"].astype(str).isin(splits).to_numpy()


def labelled_cells(obs: pd.DataFrame, record: dict[str, Any]) -> np.ndarray:
    """Mask of the cells whose cell type is known: the bio-conservation metrics compare
    embeddings with it, so cells without one (a missing value, or the unlabelled category
    of training) are left out of the evaluation, with a log line."""
    key = record["cell_type_key"]
    if key is None:
        return np.ones(len(obs), dtype=bool)
    unknown = obs[key].isna().to_numpy()
    if record["unlabelled_category"] is not None:
        unknown |= (obs[key].astype(str) == record["unlabelled_category"]).to_numpy()
    if unknown.any():
        logger.info(
            "Leaving out %d of %d cells without a cell type in obs['%s'] (missing or '%s'): "
            "the bio-conservation metrics need one.",
            int(unknown.sum()),
            len(obs),
            key,
            record["unlabelled_category"],
        )
    return ~unknown


def finite_latent(embeddings: AnnData, key: str) -> np.ndarray:
    """``obsm[key]`` as float32, refused when the model diverged (non-finite values)."""
    values = np.asarray(embeddings.obsm[key], dtype=np.float32)
    bad = int((~np.isfinite(values)).any(axis=1).sum())
    if bad:
        raise EvaluationInputError(
            f"obsm['{key}'] has non-finite values in {bad} cells; the model diverged. "
            "Retrain it (e.g. with a lower training.optimizer.learning_rate)."
        )
    return values


def stratified_subsample(
    obs: pd.DataFrame, record: dict[str, Any], max_cells: int, seed: int
) -> np.ndarray:
    """Mask of a seeded subsample of about ``max_cells`` cells, stratified by batch and
    cell type; each stratum keeps its share and at least one cell, so rare cell types
    (which the isolated-labels metric is about) survive."""
    if len(obs) <= max_cells:
        return np.ones(len(obs), dtype=bool)
    keys = [key for key in (record["batch_key"], record["cell_type_key"]) if key]
    rng = np.random.default_rng(seed)
    fraction = max_cells / len(obs)
    keep = np.zeros(len(obs), dtype=bool)
    for positions in obs.groupby(keys, observed=True, dropna=False).indices.values():
        take = max(1, round(len(positions) * fraction))
        keep[rng.choice(positions, size=take, replace=False)] = True
    return keep

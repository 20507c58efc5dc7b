"""The paired_processing steps: two raw tables -> aligned, cleaned, transformed, scaled
model input, each step applied to both platforms as the ``paired.processing`` block says.

Built from the single-table operations of ``omics_vae.data.paired``; each step that
learns something (imputation, feature selection, scaling) learns it from the training
samples of the split only.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from omics_vae.data import paired
from omics_vae.data.paired import ROLES, TRANSFORMED_LAYER, FeatureScaler, PairedInputError
from omics_vae.schemas.paired_processing import PairedProcessingParams

logger = logging.getLogger(__name__)

# The catalog entries of the raw tables, named in messages about them.
RAW_ENTRIES = {"a": "platform_a_raw", "b": "platform_b_raw"}
DROPPED_COLUMNS = ["platform", "feature", "missing_fraction"]


def align_platforms(
    platform_a_raw: pd.DataFrame, platform_b_raw: pd.DataFrame, config: PairedProcessingParams
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Read both tables by sample ID and keep the samples measured on both.

    Args:
        platform_a_raw: Platform A as read from CSV (sample ID first).
        platform_b_raw: Platform B as read from CSV.
        config: The ``paired.processing`` block.

    Returns:
        Both tables on the shared samples (A's order) and the report of dropped samples.
    """
    frames = {
        role: paired.table_to_frame(
            raw, RAW_ENTRIES[role], transpose=config.platform(role).transpose
        )
        for role, raw in zip(ROLES, (platform_a_raw, platform_b_raw), strict=True)
    }
    names = (config.platform_a.name, config.platform_b.name)
    return paired.align_samples(frames["a"], frames["b"], names)


def split_samples(aligned_a: pd.DataFrame, config: PairedProcessingParams) -> pd.DataFrame:
    """A seeded train/val/test assignment of the aligned samples (``sample_id``, ``split``).

    Raises:
        PairedInputError: The train or the val split is empty.
    """
    split = config.split
    fractions = {"train": split.train, "val": split.val, "test": split.test}
    labels = paired.assign_split(len(aligned_a), fractions, split.seed)
    for name in ("train", "val"):
        if not (labels == name).any():
            raise PairedInputError(
                f"The {name} split of {len(aligned_a)} aligned samples is empty; raise "
                f"paired.processing.split.{name} in conf/base/parameters_paired.yml."
            )
    return pd.DataFrame({"sample_id": aligned_a.index, "split": labels})


def clean_platforms(
    aligned_a: pd.DataFrame,
    aligned_b: pd.DataFrame,
    split: pd.DataFrame,
    config: PairedProcessingParams,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Drop mostly-missing features and impute the rest (imputers fitted on train).

    Returns:
        Both cleaned tables and the dropped features (``platform``, ``feature``,
        ``missing_fraction``).
    """
    train = _train_mask(split)
    cleaned, dropped_rows = [], []
    for role, frame in zip(ROLES, (aligned_a, aligned_b), strict=True):
        platform = config.platform(role)
        kept, dropped = paired.drop_sparse_features(
            frame,
            platform.max_missing_fraction,
            platform.name,
            setting=f"paired.processing.platform_{role}.max_missing_fraction",
        )
        missing = frame[dropped].isna().mean(axis=0)
        dropped_rows += [
            {"platform": platform.name, "feature": f, "missing_fraction": float(missing[f])}
            for f in dropped
        ]
        cleaned.append(
            paired.impute_missing(kept, train, platform.imputation, platform.knn_neighbors)
        )
    report = pd.DataFrame(dropped_rows, columns=DROPPED_COLUMNS)
    return cleaned[0], cleaned[1], report


def transform_platforms(
    clean_a: pd.DataFrame,
    clean_b: pd.DataFrame,
    split: pd.DataFrame,
    config: PairedProcessingParams,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Library normalisation, log transform and selection of the most variable features.

    Raises:
        PairedInputError: The log transform gives non-finite values.
    """
    train = _train_mask(split)
    transformed = []
    for role, frame in zip(ROLES, (clean_a, clean_b), strict=True):
        platform = config.platform(role)
        values = paired.normalize_library(frame.to_numpy(), platform.normalize_total)
        values = paired.log_transform(values, platform.log, platform.log_offset)
        if not np.isfinite(values).all():
            raise PairedInputError(
                f"{platform.name}: the {platform.log} transform gives non-finite values "
                f"(min value before it {np.nanmin(frame.to_numpy()):g}). Use log2 with a "
                f"larger paired.processing.platform_{role}.log_offset, or log: none."
            )
        keep = paired.top_variable_features(values, train, platform.top_variable_features)
        transformed.append(pd.DataFrame(values[:, keep], frame.index, frame.columns[keep]))
    return transformed[0], transformed[1]


def scale_platforms(
    transformed_a: pd.DataFrame,
    transformed_b: pd.DataFrame,
    split: pd.DataFrame,
    config: PairedProcessingParams,
) -> tuple[AnnData, dict[str, Any]]:
    """Fit per-feature scalers on train, scale every split, assemble the model input.

    Returns:
        The model input (see ``omics_vae.data.paired``) and the scaler record: per platform
        its name, library normalisation, log transform and scaler, plain JSON.
    """
    train = _train_mask(split)
    scaled, var_frames, record = [], [], {"platforms": {}}
    for role, frame in zip(ROLES, (transformed_a, transformed_b), strict=True):
        platform = config.platform(role)
        values = frame.to_numpy()
        scaler = FeatureScaler.fit(values[train], frame.columns, platform.scaler)
        scaled.append(scaler.transform(values))
        var_frames.append(
            pd.DataFrame(
                {"role": role, "platform": platform.name, "feature": frame.columns},
                index=[f"{platform.name}:{f}" for f in frame.columns],
            )
        )
        record["platforms"][role] = {
            "name": platform.name,
            "normalize_total": platform.normalize_total,
            "log": platform.log,
            "log_offset": platform.log_offset,
            "scaler": scaler.to_dict(),
        }
    obs = pd.DataFrame(
        {"split": pd.Categorical(split["split"].to_numpy())}, index=transformed_a.index
    )
    adata = AnnData(
        X=np.hstack(scaled).astype(np.float32),
        obs=obs,
        var=pd.concat(var_frames),
        layers={TRANSFORMED_LAYER: np.hstack([transformed_a, transformed_b]).astype(np.float32)},
    )
    adata.uns["paired_processing"] = {"params": config.model_dump(mode="json")}
    logger.info(
        "Paired model input: %d samples (%s), %d %s + %d %s features",
        adata.n_obs,
        dict(split["split"].value_counts()),
        transformed_a.shape[1],
        config.platform_a.name,
        transformed_b.shape[1],
        config.platform_b.name,
    )
    return adata, record


def _train_mask(split: pd.DataFrame) -> np.ndarray:
    """Which samples of the split table (``split_samples`` output) are for training."""
    return (split["split"] == "train").to_numpy()

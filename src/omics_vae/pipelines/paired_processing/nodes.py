"""Nodes of the paired_processing pipeline: two raw tables -> aligned, cleaned, scaled
model input, the scalers (plain JSON) and reports of what was dropped.

Each node validates the ``paired.processing`` block and calls its step in the
Kedro-free ``omics_vae.processing.paired``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from anndata import AnnData

from omics_vae.processing import paired as steps
from omics_vae.schemas.paired_processing import PairedProcessingParams


def align_platforms(
    platform_a_raw: pd.DataFrame, platform_b_raw: pd.DataFrame, params: PairedProcessingParams
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Both tables on the samples measured on both, and the report of dropped samples."""
    return steps.align_platforms(platform_a_raw, platform_b_raw, params)


def split_samples(aligned_a: pd.DataFrame, params: PairedProcessingParams) -> pd.DataFrame:
    """A seeded train/val/test assignment of the aligned samples (``sample_id``, ``split``)."""
    return steps.split_samples(aligned_a, params)


def clean_platforms(
    aligned_a: pd.DataFrame,
    aligned_b: pd.DataFrame,
    split: pd.DataFrame,
    params: PairedProcessingParams,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Drop mostly-missing features and impute the rest (imputers fitted on train)."""
    return steps.clean_platforms(aligned_a, aligned_b, split, params)


def transform_platforms(
    clean_a: pd.DataFrame,
    clean_b: pd.DataFrame,
    split: pd.DataFrame,
    params: PairedProcessingParams,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Library normalisation, log transform and selection of the most variable features."""
    return steps.transform_platforms(clean_a, clean_b, split, params)


def scale_platforms(
    transformed_a: pd.DataFrame,
    transformed_b: pd.DataFrame,
    split: pd.DataFrame,
    params: PairedProcessingParams,
) -> tuple[AnnData, dict[str, Any]]:
    """Fit per-feature scalers on train, scale every split, assemble the model input."""
    return steps.scale_platforms(transformed_a, transformed_b, split, params)

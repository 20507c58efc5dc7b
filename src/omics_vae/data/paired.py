"""Paired two-platform tables: reading, alignment, cleaning, transforms, scalers, tensors.

Plain pandas / numpy / scikit-learn / torch, no Kedro. The paired pipelines chain these
steps; each one that learns something (imputation, feature selection, scaling) learns it
from the training samples only, so nothing about validation or test samples leaks in.

The processed data are one AnnData: samples as observations, the features of both
platforms as variables (``var["role"]`` is ``"a"`` or ``"b"``, ``var["platform"]`` the
user's platform name, ``var["feature"]`` the original feature name; ``var_names`` are
``"<platform>:<feature>"`` because two platforms may share feature names), ``X`` the
scaled model input, ``layers["transformed"]`` the values before scaling (after library
normalisation and log) and ``obs["split"]``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from anndata import AnnData

from omics_vae.errors import ProjectError

logger = logging.getLogger(__name__)

ROLES = ("a", "b")
TRANSFORMED_LAYER = "transformed"
ImputationMethod = Literal["mean", "median", "knn"]
LogMethod = Literal["none", "log1p", "log2"]
ScalerMethod = Literal["zscore", "minmax", "robust", "none"]


class PairedInputError(ProjectError, ValueError):
    """Paired input that cannot be processed; the message names the file, key and fix."""


# ---- reading and alignment -----------------------------------------------------------


def table_to_frame(table: pd.DataFrame, source: str, *, transpose: bool = False) -> pd.DataFrame:
    """A raw table as a numeric DataFrame indexed by sample ID (string).

    Args:
        table: As read from CSV: sample IDs in the first column, one feature per further
            column (or, with ``transpose``, feature names in the first column and one
            sample per further column).
        source: Name of the table for messages (its catalog entry).
        transpose: The file holds features as rows.

    Returns:
        Samples x features, float64, index named ``sample_id``.

    Raises:
        PairedInputError: The table is empty, its IDs are not unique, or a feature column
            is not numeric.
    """
    if table.shape[1] < 2 or table.shape[0] < 1:
        raise PairedInputError(
            f"{source}: expected an ID column and at least one feature column, got shape "
            f"{table.shape}. Check the file and its load_args in conf/base/catalog_paired.yml."
        )
    frame = table.set_index(table.columns[0])
    if transpose:
        frame = frame.T
    frame.index = frame.index.astype(str)
    frame.columns = frame.columns.astype(str)
    duplicated = frame.index[frame.index.duplicated()].unique()
    if len(duplicated):
        raise PairedInputError(
            f"{source}: the sample ID column is not unique; repeated IDs: "
            f"{_preview(list(duplicated))}. Remove or rename the duplicates (or set "
            "paired.processing.platform_a.transpose: true, or platform_b's, if the file holds "
            "features as rows)."
        )
    non_numeric = [
        column
        for column in frame.columns
        if not pd.api.types.is_numeric_dtype(frame[column])
        and pd.to_numeric(frame[column], errors="coerce").notna().sum()
        < frame[column].notna().sum()
    ]
    if non_numeric:
        raise PairedInputError(
            f"{source}: feature column(s) {_preview(non_numeric)} hold non-numeric values. "
            "Every column after the ID column must be a number (empty cells are missing "
            "values); remove annotation columns from the file."
        )
    frame = frame.apply(pd.to_numeric, errors="coerce").astype(np.float64)
    frame.index.name = "sample_id"
    return frame


def align_samples(
    frame_a: pd.DataFrame, frame_b: pd.DataFrame, names: tuple[str, str]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Keep the samples measured on both platforms, in platform A's order.

    Args:
        frame_a: Platform A, indexed by sample ID.
        frame_b: Platform B, indexed by sample ID.
        names: The two platforms' names, for messages and the report.

    Returns:
        ``(a, b, report)``: both tables on the shared samples, and one report row per
        dropped sample (``sample_id``, ``present_in``, ``missing_from``).

    Raises:
        PairedInputError: The tables share no sample ID.
    """
    shared = frame_a.index[frame_a.index.isin(frame_b.index)]
    if len(shared) == 0:
        raise PairedInputError(
            f"No sample ID is in both {names[0]} ({len(frame_a)} samples, e.g. "
            f"{_preview(list(frame_a.index), 3)}) and {names[1]} ({len(frame_b)} samples, "
            f"e.g. {_preview(list(frame_b.index), 3)}). Both files must name the same "
            "samples in their first column; check that the right files are paired in "
            "conf/*/catalog_paired.yml and that IDs are written the same way."
        )
    only_a = frame_a.index.difference(frame_b.index)
    only_b = frame_b.index.difference(frame_a.index)
    report = pd.DataFrame(
        {
            "sample_id": [*only_a, *only_b],
            "present_in": [names[0]] * len(only_a) + [names[1]] * len(only_b),
            "missing_from": [names[1]] * len(only_a) + [names[0]] * len(only_b),
        }
    )
    if len(report):
        logger.warning(
            "Dropped %d sample(s) measured on one platform only (%d only in %s, %d only in "
            "%s); they are listed in the alignment report.",
            len(report),
            len(only_a),
            names[0],
            len(only_b),
            names[1],
        )
    return frame_a.loc[shared], frame_b.loc[shared], report


def assign_split(n_samples: int, fractions: dict[str, float], seed: int) -> np.ndarray:
    """A seeded random train/val/test label per sample, in the given proportions."""
    names = list(fractions)
    counts = np.floor(np.array([fractions[n] for n in names]) * n_samples).astype(int)
    counts[names.index("train")] += n_samples - counts.sum()
    labels = np.repeat(names, counts)
    return np.random.default_rng(seed).permutation(labels)


# ---- cleaning and transforms ---------------------------------------------------------


def drop_sparse_features(
    frame: pd.DataFrame,
    max_missing_fraction: float,
    platform: str,
    setting: str = "paired.processing.platform_<a|b>.max_missing_fraction",
) -> tuple[pd.DataFrame, list[str]]:
    """Drop features missing in more than ``max_missing_fraction`` of the samples.

    Args:
        setting: The dotted key of ``max_missing_fraction`` for this platform, which the
            error tells the user to raise.

    Raises:
        PairedInputError: Every feature would be dropped.
    """
    missing = frame.isna().mean(axis=0)
    dropped = list(missing.index[missing > max_missing_fraction])
    if len(dropped) == frame.shape[1]:
        # The smallest value, in hundredths, that keeps the least-missing feature.
        keeps_one = math.ceil(float(missing.min()) * 100) / 100
        raise PairedInputError(
            f"{platform}: all {frame.shape[1]} features are missing in more than "
            f"{max_missing_fraction:.0%} of the samples (least missing: "
            f"{missing.min():.0%}). Raise the limit in conf/local/parameters_paired.yml, "
            f"e.g. {setting}: {keeps_one}, or check that missing values are not an "
            "artefact of reading the file."
        )
    if dropped:
        logger.info(
            "%s: dropped %d feature(s) missing in more than %.0f%% of samples",
            platform,
            len(dropped),
            100 * max_missing_fraction,
        )
    return frame.drop(columns=dropped), dropped


def impute_missing(
    frame: pd.DataFrame,
    train: np.ndarray,
    method: ImputationMethod = "median",
    n_neighbors: int = 5,
) -> pd.DataFrame:
    """Fill missing values with an imputer fitted on the training samples only."""
    if not frame.isna().to_numpy().any():
        return frame
    from sklearn.impute import KNNImputer, SimpleImputer  # noqa: PLC0415 (import cost)

    imputer = (
        KNNImputer(n_neighbors=n_neighbors)
        if method == "knn"
        else SimpleImputer(strategy=method, keep_empty_features=True)
    )
    imputer.fit(frame.to_numpy()[train])
    return pd.DataFrame(imputer.transform(frame.to_numpy()), frame.index, frame.columns)


def normalize_library(values: np.ndarray, target_sum: float | None) -> np.ndarray:
    """Scale each sample to ``target_sum`` total (e.g. counts per 10,000); None: unchanged."""
    if target_sum is None:
        return values
    totals = values.sum(axis=1, keepdims=True)
    return values / np.where(totals > 0, totals, 1.0) * target_sum


def log_transform(values: np.ndarray, method: LogMethod, offset: float = 1.0) -> np.ndarray:
    """``log1p(x)``, ``log2(x + offset)`` or ``x``."""
    if method == "log1p":
        return np.log1p(values)
    if method == "log2":
        return np.log2(values + offset)
    return values


def inverse_log_transform(values: np.ndarray, method: LogMethod, offset: float = 1.0) -> np.ndarray:
    """Undo ``log_transform``."""
    if method == "log1p":
        return np.expm1(values)
    if method == "log2":
        return np.exp2(values) - offset
    return values


def top_variable_features(values: np.ndarray, train: np.ndarray, n_top: int | None) -> np.ndarray:
    """Column indices of the ``n_top`` features of highest training-set variance, in order."""
    if n_top is None or n_top >= values.shape[1]:
        return np.arange(values.shape[1])
    variance = values[train].var(axis=0)
    return np.sort(np.argsort(-variance, kind="stable")[:n_top])


# ---- scalers -------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureScaler:
    """A per-feature affine scaler, ``scaled = (x - center) / scale``, as plain data.

    Fitted with scikit-learn's ``StandardScaler`` (``zscore``), ``MinMaxScaler``
    (``minmax``: center = minimum, scale = range) or ``RobustScaler`` (``robust``), and
    stored as lists of floats beside the feature names, so a saved scaler is JSON and
    loading it runs no code.

    Attributes:
        method: ``zscore``, ``minmax``, ``robust`` or ``none``.
        features: Feature names, in column order.
        center: Per-feature offsets.
        scale: Per-feature divisors (never 0).
    """

    method: ScalerMethod
    features: tuple[str, ...]
    center: tuple[float, ...]
    scale: tuple[float, ...]

    @classmethod
    def fit(
        cls, values: np.ndarray, features: Sequence[str], method: ScalerMethod
    ) -> FeatureScaler:
        """Fit on ``values`` (training samples x features)."""
        from sklearn.preprocessing import (  # noqa: PLC0415 (import cost)
            MinMaxScaler,
            RobustScaler,
            StandardScaler,
        )

        n = values.shape[1]
        if method == "zscore":
            fitted = StandardScaler().fit(values)
            center, scale = fitted.mean_, fitted.scale_
        elif method == "minmax":
            fitted = MinMaxScaler().fit(values)
            center, scale = fitted.data_min_, fitted.data_range_
        elif method == "robust":
            fitted = RobustScaler().fit(values)
            center, scale = fitted.center_, fitted.scale_
        else:
            center, scale = np.zeros(n), np.ones(n)
        # Constant features keep their values' spread (scikit-learn does the same).
        scale = np.where(np.asarray(scale) > 0, scale, 1.0)
        return cls(
            method,
            tuple(map(str, features)),
            tuple(map(float, center)),
            tuple(map(float, scale)),
        )

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (values - np.asarray(self.center)) / np.asarray(self.scale)

    def inverse_transform(self, values: np.ndarray) -> np.ndarray:
        return values * np.asarray(self.scale) + np.asarray(self.center)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "features": list(self.features),
            "center": list(self.center),
            "scale": list(self.scale),
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any], source: str = "scaler") -> FeatureScaler:
        """Rebuild from ``to_dict`` output, checking its shape."""
        missing = {"method", "features", "center", "scale"} - set(record)
        if missing:
            raise PairedInputError(
                f"{source}: scaler record lacks {sorted(missing)}. Re-run the "
                "paired_processing pipeline to write a complete scaler file."
            )
        scaler = cls(
            record["method"],
            tuple(map(str, record["features"])),
            tuple(map(float, record["center"])),
            tuple(map(float, record["scale"])),
        )
        if not len(scaler.features) == len(scaler.center) == len(scaler.scale):
            raise PairedInputError(
                f"{source}: {len(scaler.features)} features but {len(scaler.center)} centers "
                f"and {len(scaler.scale)} scales. The file is damaged; re-run "
                "paired_processing."
            )
        return replace(scaler)

    def check_features(self, features: Sequence[str], source: str) -> None:
        """Refuse data whose features are not exactly this scaler's, in order."""
        features = tuple(map(str, features))
        if features == self.features:
            return
        absent = [f for f in self.features if f not in set(features)]
        extra = [f for f in features if f not in set(self.features)]
        detail = (
            f"in the scaler but not the data: {_preview(absent)}; in the data but not the "
            f"scaler: {_preview(extra)}"
            if absent or extra
            else "the same features in another order"
        )
        raise PairedInputError(
            f"{source}: the scaler's {len(self.features)} features do not match the "
            f"data's {len(features)} ({detail}). Use the scaler file written by the same "
            "paired_processing run as the data (same Kedro version, --load-versions)."
        )


def scalers_from_record(record: dict[str, Any], source: str) -> dict[str, FeatureScaler]:
    """``{"a": scaler, "b": scaler}`` from the saved scaler record."""
    platforms = record.get("platforms") if isinstance(record, dict) else None
    if not isinstance(platforms, dict) or set(platforms) != set(ROLES):
        raise PairedInputError(
            f"{source}: expected a record with platforms 'a' and 'b', got "
            f"{sorted(platforms) if isinstance(platforms, dict) else type(record).__name__}. "
            "Point it at a scaler file written by paired_processing."
        )
    return {
        role: FeatureScaler.from_dict(platforms[role]["scaler"], f"{source} platforms.{role}")
        for role in ROLES
    }


# ---- the processed AnnData -----------------------------------------------------------


def platform_view(adata: AnnData, role: str) -> AnnData:
    """The columns of one platform (``role`` ``"a"`` or ``"b"``)."""
    return adata[:, (adata.var["role"] == role).to_numpy()]


def platform_names(adata: AnnData) -> dict[str, str]:
    """``{"a": name, "b": name}`` of the processed data."""
    return {role: str(platform_view(adata, role).var["platform"].iloc[0]) for role in ROLES}


def check_paired_anndata(adata: AnnData, source: str) -> None:
    """Refuse an AnnData that is not paired_processing output."""
    if "role" not in adata.var or set(adata.var["role"]) != set(ROLES):
        raise PairedInputError(
            f"{source} is not paired data: var['role'] must mark each feature as platform "
            "'a' or 'b'. Run the paired_processing pipeline to produce it."
        )
    if "split" not in adata.obs:
        raise PairedInputError(f"{source} has no obs['split']; run paired_processing first.")


@dataclass
class PairedTensors:
    """Both platforms' scaled values as float32 tensors, sliced by index into batches.

    It offers what ``InMemoryBatchLoader`` and ``models.trainer.fit`` use of
    ``CountsTensors``: ``n_obs``, ``device``, ``nbytes``, ``to``, ``gather``, ``slice``.
    Batches are ``{"x_a": (b, n_a), "x_b": (b, n_b)}``.
    """

    x_a: torch.Tensor
    x_b: torch.Tensor
    obs_names: np.ndarray
    split: np.ndarray | None = None

    @classmethod
    def from_anndata(cls, adata: AnnData, device: str | torch.device = "cpu") -> PairedTensors:
        check_paired_anndata(adata, "paired data")

        def values(role: str) -> torch.Tensor:
            matrix = np.asarray(platform_view(adata, role).X, dtype=np.float32)
            return torch.from_numpy(np.ascontiguousarray(matrix)).to(device)

        split = adata.obs["split"].astype(str).to_numpy()
        return cls(values("a"), values("b"), np.asarray(adata.obs_names), split)

    @property
    def n_obs(self) -> int:
        return int(self.x_a.shape[0])

    def __len__(self) -> int:
        return self.n_obs

    @property
    def device(self) -> torch.device:
        return self.x_a.device

    @property
    def nbytes(self) -> int:
        return sum(t.element_size() * t.nelement() for t in (self.x_a, self.x_b))

    @property
    def log_library(self) -> torch.Tensor:
        # InMemoryBatchLoader asks this tensor whether host storage is pinned.
        return self.x_a

    def to(self, device: str | torch.device, pin_memory: bool = False) -> PairedTensors:
        def move(t: torch.Tensor) -> torch.Tensor:
            t = t.to(device)
            return t.pin_memory() if pin_memory else t

        return replace(self, x_a=move(self.x_a), x_b=move(self.x_b))

    def subset(self, selection: str | np.ndarray) -> PairedTensors:
        """The samples of one split (by name) or of a boolean mask."""
        mask = self.split == selection if isinstance(selection, str) else np.asarray(selection)
        index = torch.from_numpy(np.flatnonzero(mask)).to(self.device)
        return PairedTensors(
            self.x_a.index_select(0, index),
            self.x_b.index_select(0, index),
            self.obs_names[mask],
            None if self.split is None else self.split[mask],
        )

    def gather(self, index: torch.Tensor, pin_memory: bool = False) -> dict[str, torch.Tensor]:
        batch = {"x_a": self.x_a.index_select(0, index), "x_b": self.x_b.index_select(0, index)}
        return {k: v.pin_memory() for k, v in batch.items()} if pin_memory else batch

    def slice(self, start: int, stop: int) -> dict[str, torch.Tensor]:
        return {"x_a": self.x_a[start:stop], "x_b": self.x_b[start:stop]}


def _preview(items: Sequence[Any], limit: int = 10) -> str:
    shown = ", ".join(repr(i) for i in list(items)[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")

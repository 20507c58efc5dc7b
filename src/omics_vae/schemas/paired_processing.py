"""Schema of ``paired.processing`` in ``conf/base/parameters_paired.yml``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from omics_vae.params import StrictModel


class PlatformParams(StrictModel):
    """How one platform's table is read, cleaned, transformed and scaled."""

    name: str = Field(description="Platform name used in reports, metrics and feature names.")
    transpose: bool = Field(False, description="The file holds features as rows.")
    max_missing_fraction: float = Field(
        0.2, ge=0, le=1, description="Drop features missing in more than this share of samples."
    )
    imputation: Literal["mean", "median", "knn"] = "median"
    knn_neighbors: int = Field(5, gt=0)
    normalize_total: float | None = Field(
        None, gt=0, description="Scale each sample to this total before the log (e.g. 1e4)."
    )
    log: Literal["none", "log1p", "log2"] = "none"
    log_offset: float = Field(1.0, gt=0, description="log2(x + offset).")
    top_variable_features: int | None = Field(
        None, gt=0, description="Keep the most variable features (training samples)."
    )
    scaler: Literal["zscore", "minmax", "robust", "none"] = "zscore"


class SplitParams(StrictModel):
    train: float = Field(0.7, gt=0, lt=1)
    val: float = Field(0.15, gt=0, lt=1)
    test: float = Field(0.15, ge=0, lt=1)
    seed: int = 0

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> SplitParams:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1, got {total:g}")
        return self


class PairedProcessingParams(StrictModel):
    platform_a: PlatformParams = PlatformParams(name="platform_a")
    platform_b: PlatformParams = PlatformParams(name="platform_b")
    split: SplitParams = SplitParams()

    @model_validator(mode="after")
    def _distinct_names(self) -> PairedProcessingParams:
        if self.platform_a.name == self.platform_b.name:
            raise ValueError(
                f"platform_a.name and platform_b.name are both {self.platform_a.name!r}"
            )
        return self

    def platform(self, role: str) -> PlatformParams:
        return self.platform_a if role == "a" else self.platform_b

"""Schema of ``paired.evaluation`` in ``conf/base/parameters_paired.yml``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from omics_vae.params import StrictModel


class BaselineParams(StrictModel):
    knn_neighbors: int = Field(15, gt=0)
    ridge_alpha: float = Field(1.0, gt=0)
    pca_components: int | None = Field(
        30, gt=0, description="Baselines regress on this many principal components; null: all."
    )
    fit_on: Literal["train", "train_val"] = Field(
        "train", description="Samples the baselines are fitted on."
    )


class PairedEvaluationParams(StrictModel):
    split: Literal["train", "val", "test"] = "test"
    space: Literal["transformed", "original"] = Field(
        "transformed", description="Score after the log (transformed) or in original units."
    )
    baselines: BaselineParams = BaselineParams()
    permutation_seed: int = 0
    n_scatter_features: int = Field(3, gt=0, description="Best and worst features plotted.")

"""Schema of ``sweep_comparison`` in ``conf/base/parameters_sweeps.yml``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from omics_vae.params import StrictModel


class SweepComparisonParams(StrictModel):
    metrics: list[str] = Field(
        default_factory=lambda: ["scib/total"],
        description="Scores tested pair by pair between variant groups (scib/<metric>, "
        "training/best_val_loss, training/wall_time_s, training/epochs).",
        min_length=1,
    )
    test: Literal["ttest", "wilcoxon"] = Field(
        "ttest", description="Paired t-test or Wilcoxon signed-rank on seed-matched scores."
    )
    correction: Literal["fdr_bh", "fdr_by", "holm", "bonferroni"] = Field(
        "fdr_bh", description="Multiple-testing correction over the pairs of each metric."
    )

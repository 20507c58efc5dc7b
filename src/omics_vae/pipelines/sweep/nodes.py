"""The sweep's comparison node, and how each family's scores are read for it
(``families.Family.score_row``); the statistics live in ``omics_vae.evaluation.comparison``."""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from omics_vae.evaluation import comparison
from omics_vae.evaluation.comparison import paired_scores, single_cell_scores
from omics_vae.schemas.sweep import SweepComparisonParams

__all__ = ["compare_variants", "paired_scores", "single_cell_scores"]


def compare_variants(
    params: SweepComparisonParams, **inputs: Any
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, Figure]:
    """The sweep's comparison: per-variant scores, per-group summary, pairwise tests and
    the figure.

    Args:
        params: The ``sweep_comparison`` parameter block (metrics, test, correction).
        inputs: See :func:`collect_variant_scores`.
    """
    return comparison.compare_variants(inputs, params.metrics, params.test, params.correction)

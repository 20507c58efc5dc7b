"""The QC figure: the metrics per batch before and after filtering, with the thresholds."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from omics_vae.schemas.data_processing import DataProcessingParams


def plot_qc_metrics(qc_metrics: pd.DataFrame, params: DataProcessingParams) -> Figure:
    """Draws the QC metrics per batch, before (top row) and after (bottom row) filtering.

    Args:
        qc_metrics: Per-cell metrics from ``filter_cells_and_genes``.
        params: The ``data_processing`` parameter block.

    Returns:
        A 2 x 3 figure of box plots: total counts, genes detected and % mitochondrial
        counts per batch, with the QC thresholds as dashed lines.
    """
    qc = params.qc
    panels = (
        ("total_counts", "Total counts per cell", "counts", qc.min_counts_per_cell,
         "qc.min_counts_per_cell"),
        ("n_genes_by_counts", "Genes detected per cell", "genes with counts > 0",
         qc.min_genes_per_cell, "qc.min_genes_per_cell"),
        ("pct_counts_mt", "Mitochondrial counts", f"% of counts in {qc.mito_prefix}* genes",
         qc.max_pct_mito, "qc.max_pct_mito"),
    )  # fmt: skip
    batch = qc_metrics[params.batch_key]
    batches = list(batch.cat.categories) if hasattr(batch, "cat") else sorted(batch.unique())
    stages = (("before QC", qc_metrics), ("after QC", qc_metrics[qc_metrics["passed_qc"]]))

    figure = Figure(figsize=(5 * len(panels), 9), layout="constrained")
    axes = figure.subplots(len(stages), len(panels), sharey="col")
    for row, (stage, frame) in enumerate(stages):
        for col, (column, title, ylabel, threshold, key) in enumerate(panels):
            ax = axes[row, col]
            values = [frame.loc[frame[params.batch_key] == b, column].to_numpy() for b in batches]
            _box_plot(ax, values, [str(b) for b in batches])
            ax.axhline(threshold, color="tab:red", linestyle="--", label=f"{key} = {threshold:g}")
            ax.set_title(f"{title}, {stage} ({len(frame):,} cells)")
            ax.set_xlabel(f"batch (obs['{params.batch_key}'])")
            ax.set_ylabel(ylabel)
            ax.legend(loc="upper right", fontsize="small")
    figure.suptitle("Quality control per batch: before (top) and after (bottom) filtering")
    return figure


def _box_plot(ax: Axes, values: list[np.ndarray], labels: list[str]) -> None:
    ax.boxplot(
        values,
        tick_labels=labels,
        flierprops={"marker": ".", "markersize": 2, "alpha": 0.4},
        medianprops={"color": "black"},
    )
    if len(labels) > 4:
        ax.tick_params(axis="x", labelrotation=45)

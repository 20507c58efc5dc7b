"""The single-cell evaluation's figures: the benchmark's heat table, the UMAP grid, the
heat map of η² per latent dimension and the UMAP of anomaly scores."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from scanpy.plotting.palettes import default_20, default_102

from omics_vae.evaluation.cells import (
    BATCH,
    CELL_TYPE,
    METRIC_TYPE_ROW,
    MODEL,
    RECONSTRUCTION_ERROR,
    bio_is_supervised,
)
from omics_vae.schemas.evaluation import AnomalyParams

# ---- integration benchmark --------------------------------------------------------------


def plot_results(results: pd.DataFrame, info: dict[str, Any], n_cells: int) -> Figure:
    """Heat table of scib-metrics' results on a fixed 0-1 colour scale.

    Drawn here rather than with ``Benchmarker.plot_results_table``, whose colours are
    relative to each column's spread: a single embedding comes out blank and a tie
    (e.g. two perfect NMIs) in the colour of the worst score.

    Args:
        results: scib-metrics' ``get_results(min_max_scale=False)``: embeddings x
            metrics, plus the row naming each column's metric family.
        info: ``uns["evaluation"]`` of the benchmarked cells.
        n_cells: Cells benchmarked, for the title.

    Returns:
        The figure: one row per embedding, metrics grouped by family, the model's row in
        bold.
    """
    kinds = results.loc[METRIC_TYPE_ROW]
    scores = results.drop(index=METRIC_TYPE_ROW).astype(float)
    if scores.columns.empty:
        return _no_scores(list(scores.index), info, n_cells)
    groups = list(dict.fromkeys(kinds))
    columns = [column for group in groups for column in kinds.index[kinds == group]]
    values = scores[columns].to_numpy()
    figure = Figure(
        figsize=(2.2 + 0.95 * len(columns), 1.9 + 0.45 * len(scores)), layout="constrained"
    )
    axis = figure.subplots()
    colours = colormaps["YlGnBu"].copy()
    colours.set_bad("whitesmoke")
    axis.imshow(np.ma.masked_invalid(values), cmap=colours, vmin=0, vmax=1, aspect="auto")
    for (row, column), value in np.ndenumerate(values):
        axis.text(
            column,
            row,
            "n/a" if np.isnan(value) else f"{value:.2f}",
            ha="center",
            va="center",
            fontsize=9,
            color="white" if value > 0.6 else "black",
        )
    _label_embeddings(axis, list(scores.index), info)
    axis.set_xticks(range(len(columns)), [c.replace(" ", "\n", 1) for c in columns], fontsize=8)
    axis.tick_params(length=0)
    axis.xaxis.tick_top()
    _label_metric_families(axis, kinds, groups)
    figure.suptitle(_results_title(info, n_cells))
    return figure


def _no_scores(names: list[str], info: dict[str, Any], n_cells: int) -> Figure:
    """The heat table's place when no metric applies: the embeddings and why."""
    figure = Figure(figsize=(6.4, 2.4), layout="constrained")
    axis = figure.subplots()
    axis.set_axis_off()
    axis.text(
        0.5,
        0.5,
        f"No metric computed for {', '.join(names)}",
        ha="center",
        va="center",
        transform=axis.transAxes,
    )
    figure.suptitle(_results_title(info, n_cells))
    return figure


def _label_embeddings(axis: Axes, names: list[str], info: dict[str, Any]) -> None:
    """One row label per embedding; the model's in bold, marked when supervised."""
    rows = [
        f"{name} (supervised)" if name == info["model"] and bio_is_supervised(info) else name
        for name in names
    ]
    axis.set_yticks(range(len(rows)), rows)
    for label in axis.get_yticklabels():
        if label.get_text().startswith(info["model"]):
            label.set_fontweight("bold")


def _label_metric_families(axis: Axes, kinds: pd.Series, groups: list[str]) -> None:
    """A bold heading over each family's columns and a rule between families."""
    start = 0
    for group in groups:
        width = int((kinds == group).sum())
        if start:
            axis.axvline(start - 0.5, color="black", linewidth=1.5)
        axis.annotate(
            group,
            xy=(start + (width - 1) / 2, 1),
            xycoords=("data", "axes fraction"),
            xytext=(0, 30),  # above the two-line column labels
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontweight="bold",
        )
        start += width


def _results_title(info: dict[str, Any], n_cells: int) -> str:
    title = f"scib-metrics: {info['model']} vs baselines, {n_cells:,} cells, unscaled scores"
    if bio_is_supervised(info):
        title += f"\n{info['model']}'s bio conservation is supervised (trained with cell types)"
    if info.get("single_batch") is not None:
        title += f"\none batch ('{info['single_batch']}'): no batch correction to measure"
    if not info["cell_type_key"]:
        title += (
            "\nno cell-type key: no bio conservation either"
            if info.get("single_batch") is not None
            else "\nno cell-type key: batch correction only"
        )
    return title


# ---- UMAPs ------------------------------------------------------------------------------


def plot_umaps(umap_coordinates: pd.DataFrame) -> Figure:
    """UMAP grid: one row per embedding, coloured by batch and by cell type.

    Args:
        umap_coordinates: Output of :func:`omics_vae.evaluation.umaps.compute_umaps`.

    Returns:
        The figure; legends sit to the right of each column's top panel.
    """
    names = list(dict.fromkeys(umap_coordinates["embedding"]))
    colour_by = [column for column in (BATCH, CELL_TYPE) if umap_coordinates[column].notna().any()]
    figure = Figure(figsize=(6.2 * len(colour_by), 4.2 * len(names)), layout="constrained")
    axes = figure.subplots(len(names), len(colour_by), squeeze=False)
    for row, name in enumerate(names):
        coordinates = umap_coordinates[umap_coordinates["embedding"] == name]
        for column, key in enumerate(colour_by):
            axis = axes[row, column]
            _categorical_scatter(axis, coordinates, key, legend=row == 0)
            axis.set_title(f"{name} — {key.replace('_', ' ')}")
    n_cells = int((umap_coordinates["embedding"] == names[0]).sum())
    figure.suptitle(f"UMAP of each embedding ({n_cells:,} cells)")
    return figure


def _categorical_scatter(axis: Axes, coordinates: pd.DataFrame, key: str, legend: bool) -> None:
    categories = sorted(coordinates[key].unique())
    palette = default_20 if len(categories) <= len(default_20) else default_102
    colours = dict(zip(categories, palette, strict=False))
    # A fixed shuffle, so no batch or type is painted over all the others.
    shuffled = coordinates.sample(frac=1.0, random_state=0)
    axis.scatter(
        shuffled["umap_1"],
        shuffled["umap_2"],
        c=shuffled[key].map(colours).fillna("lightgrey").to_list(),
        s=_point_size(len(shuffled)),
        linewidths=0,
        rasterized=True,
    )
    _bare_axes(axis)
    if legend:
        handles = [
            axis.scatter([], [], color=colours[category], s=30, label=str(category))
            for category in categories
        ]
        axis.legend(
            handles=handles,
            loc="center left",
            bbox_to_anchor=(1.0, 0.5),
            frameon=False,
            fontsize=8,
            ncol=math.ceil(len(categories) / 18),
            title=key.replace("_", " "),
        )


def _point_size(n_cells: int) -> float:
    # scanpy's default: smaller points for more cells.
    return float(np.clip(120_000 / max(n_cells, 1), 0.5, 30))


def _bare_axes(axis: Axes) -> None:
    axis.set_xticks([])
    axis.set_yticks([])
    axis.set_xlabel("UMAP 1")
    axis.set_ylabel("UMAP 2")


# ---- latent dimensions vs covariates ----------------------------------------------------


def plot_latent_association(latent_association: pd.DataFrame) -> Figure:
    """Heat map of η²: rows = latent dimensions grouped by latent, columns = covariates.

    Args:
        latent_association: Output of
            :func:`omics_vae.evaluation.statistics.compute_latent_association`.

    Returns:
        The figure, one panel per latent on a shared 0-1 colour scale.
    """
    latents = list(dict.fromkeys(latent_association["latent"]))
    covariates = list(dict.fromkeys(latent_association["covariate"]))
    heights = [
        latent_association.loc[latent_association["latent"] == z, "dimension"].nunique()
        for z in latents
    ]
    figure = Figure(
        figsize=(2.4 + 1.4 * len(covariates), 1.4 + 0.26 * sum(heights)), layout="constrained"
    )
    axes = figure.subplots(len(latents), 1, squeeze=False, height_ratios=heights)[:, 0]
    image = None
    for index, (axis, latent) in enumerate(zip(axes, latents, strict=True)):
        grid = latent_association[latent_association["latent"] == latent].pivot(
            index="dimension", columns="covariate", values="eta_squared"
        )[covariates]
        image = axis.imshow(grid.to_numpy(), cmap="viridis", vmin=0, vmax=1, aspect="auto")
        axis.set_yticks(range(len(grid)), [str(d) for d in grid.index], fontsize=7)
        axis.set_ylabel(f"{latent} dimension")
        axis.set_xticks(range(len(covariates)), [c.replace("_", " ") for c in covariates])
        axis.xaxis.tick_top()
        if index > 0:
            axis.tick_params(axis="x", labeltop=False)
        _write_values(axis, grid.to_numpy())
    figure.colorbar(image, ax=list(axes), label="η² (share of variance explained)", shrink=0.6)
    figure.suptitle("Latent dimensions vs batch and cell type")
    return figure


def _write_values(axis: Axes, grid: np.ndarray) -> None:
    """Each defined η² written in its cell, dark on the bright end of viridis."""
    for (row, column), value in np.ndenumerate(grid):
        if np.isfinite(value):
            axis.text(
                column,
                row,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="black" if value > 0.5 else "white",
            )


# ---- anomalies --------------------------------------------------------------------------


def plot_anomalies(
    umap_coordinates: pd.DataFrame, anomaly_scores: pd.DataFrame, config: AnomalyParams
) -> Figure:
    """The model's UMAP coloured by the combined anomaly score, flagged cells ringed.

    Args:
        umap_coordinates: Output of :func:`omics_vae.evaluation.umaps.compute_umaps`.
        anomaly_scores: Output of :func:`omics_vae.evaluation.anomalies.score_anomalies`.
        config: The ``evaluation.anomaly`` parameters the scores were made with (for the
            title).

    Returns:
        The figure.
    """
    model_umap = umap_coordinates[umap_coordinates["role"] == MODEL]
    cells = model_umap.merge(anomaly_scores[["cell", "combined_score", "flagged"]], on="cell")
    # The most anomalous cells on top.
    cells = cells.sort_values("combined_score")
    figure = Figure(figsize=(7.5, 6), layout="constrained")
    axis = figure.subplots()
    points = axis.scatter(
        cells["umap_1"],
        cells["umap_2"],
        c=cells["combined_score"],
        cmap="viridis",
        s=_point_size(len(cells)),
        linewidths=0,
        rasterized=True,
    )
    flagged = cells[cells["flagged"]]
    axis.scatter(
        flagged["umap_1"],
        flagged["umap_2"],
        s=max(4 * _point_size(len(cells)), 25),
        facecolors="none",
        edgecolors="red",
        linewidths=1.0,
        label=f"flagged ({len(flagged)} of {int(anomaly_scores['flagged'].sum())} in view)",
    )
    _bare_axes(axis)
    axis.legend(loc="upper right", frameon=False, fontsize=8)
    figure.colorbar(points, ax=axis, label=f"combined anomaly score ({config.combine})")
    name = model_umap["embedding"].iloc[0] if len(model_umap) else "model"
    axis.set_title(_anomaly_title(name, config, anomaly_scores), fontsize=10)
    return figure


def _anomaly_title(name: str, config: AnomalyParams, anomaly_scores: pd.DataFrame) -> str:
    how = f"{config.method.replace('_', ' ')} on the latent"
    if anomaly_scores[RECONSTRUCTION_ERROR].notna().any():
        how += (
            f" + {config.reconstruction.replace('_', '-')} reconstruction error,"
            f" {config.combine} average"
        )
    else:
        how += " (no reconstruction error)"
    return f"{name}: anomaly score, top {config.fraction:.1%} flagged\n{how}"


# ---- query mapping -----------------------------------------------------------------------


def plot_mapping_umap(coordinates: pd.DataFrame, colour_by: list[str]) -> Figure:
    """UMAP of reference and query cells, one panel per column of ``colour_by``.

    Args:
        coordinates: ``umap_1``, ``umap_2`` and the ``colour_by`` columns, one row per cell.
        colour_by: Columns to colour by, e.g. ``dataset``, the batch, the label.
    """
    figure = Figure(figsize=(6.2 * len(colour_by), 4.6), layout="constrained")
    axes = figure.subplots(1, len(colour_by), squeeze=False)[0]
    for axis, key in zip(axes, colour_by, strict=True):
        _categorical_scatter(axis, coordinates, key, legend=True)
        axis.set_title(key.replace("_", " "))
    counts = coordinates["dataset"].value_counts()
    figure.suptitle(
        f"Reference ({counts.get('reference', 0):,} cells) and query "
        f"({counts.get('query', 0):,} cells) in the model's latent"
    )
    return figure

"""scib-metrics' integration benchmark of the model's latent and the baselines, its
results as a flat table and as MLflow metrics."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from typing import Any
from unittest import mock

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.figure import Figure
from sklearn.neighbors import NearestNeighbors

from omics_vae.evaluation.cells import (
    BASELINE,
    BATCH,
    CELL_TYPE,
    METRIC_TYPE_ROW,
    MODEL,
    PARAMETERS_FILE,
    PCA_KEY,
    RECORD_KEY,
    EvaluationInputError,
    benchmark_subsample,
    bio_is_supervised,
)
from omics_vae.evaluation.figures import plot_results
from omics_vae.schemas.evaluation import EvaluationParams

logger = logging.getLogger(__name__)

# The aggregate columns of scib-metrics' results, present in the table even when a
# metric family did not run, so every run's table has the same columns.
SCORE_COLUMNS = ("Batch correction", "Bio conservation", "Total")
DESCRIPTION_COLUMNS = ("embedding", "role", "supervised", "n_cells", "note")


def benchmark_integration(
    evaluation_cells: AnnData, config: EvaluationParams
) -> tuple[pd.DataFrame, Figure]:
    """scib-metrics' integration benchmark of the model's latent and the baselines.

    Scores are scib-metrics' raw values (``get_results(min_max_scale=False)``), not
    rescaled between the embeddings, so they compare across runs. Without a cell-type
    key only the batch-correction metrics run; BRAS, kBET and graph connectivity, which
    work per label, then treat all cells as one label.

    Args:
        evaluation_cells: Output of
            :func:`omics_vae.evaluation.preparation.prepare_evaluation_cells`.
        config: The ``evaluation`` parameters (``metrics``, ``neighbors``).

    Returns:
        One row per embedding (``embedding``, ``role`` model/baseline, ``supervised``,
        ``n_cells``, one column per metric, ``Batch correction``, ``Bio conservation``,
        ``Total`` and a ``note``) and a heat table of the scores
        (:func:`omics_vae.evaluation.figures.plot_results`).

    Raises:
        EvaluationInputError: No metric can run (no cell types and no batch metric).
    """
    from scib_metrics.benchmark import (  # noqa: PLC0415 (jax import takes seconds)
        BatchCorrection,
        Benchmarker,
        BioConservation,
    )

    cells = benchmark_subsample(evaluation_cells)
    info = dict(evaluation_cells.uns[RECORD_KEY])
    info["single_batch"] = _single_batch(cells, info["batch_key"])
    has_labels = info["cell_type_key"] is not None
    bio = _metric_flags(BioConservation, config.metrics.bio) if has_labels else None
    batch = _metric_flags(BatchCorrection, config.metrics.batch)
    if bio is None and batch is None:
        raise EvaluationInputError(
            "No metric to compute: the data has no cell-type key, so the bio-conservation "
            f"metrics cannot run, and evaluation.metrics.batch is empty. Name batch metrics "
            f"in {PARAMETERS_FILE}."
        )
    if not has_labels:
        logger.info("No cell-type key: only batch-correction metrics run")
    if info["single_batch"] is not None and batch is not None:
        logger.warning(
            "The evaluated cells are all of one batch (obs['%s'] = '%s'): there is no batch "
            "effect to remove, so the batch-correction metrics are skipped%s.",
            info["batch_key"],
            info["single_batch"],
            "" if bio is not None else " and, without cell types, no metric is computed",
        )
        batch = None
    if bio is None and batch is None:
        return _nothing_scored(info, cells.n_obs)

    benchmarker = Benchmarker(
        _benchmark_data(cells, info),
        batch_key=BATCH,
        label_key=CELL_TYPE,
        embedding_obsm_keys=list(info["embeddings"]),
        bio_conservation_metrics=bio,
        batch_correction_metrics=batch,
        pre_integrated_embedding_obsm_key=PCA_KEY,
        progress_bar=False,
    )
    logger.info(
        "scib-metrics on %d cells: %s", cells.n_obs, ", ".join(_enabled(bio) + _enabled(batch))
    )
    with neighbour_search(config.neighbors) as neighbour_computer:
        benchmarker.prepare(neighbor_computer=neighbour_computer)
        benchmarker.benchmark()
    raw_results = benchmarker.get_results(min_max_scale=False)
    results = results_table(raw_results, info, cells.n_obs)
    # The aggregate scores only: every metric is in scib_results.csv and its figure.
    headline = [
        c for c in ("embedding", "Batch correction", "Bio conservation", "Total") if c in results
    ]
    logger.info(
        "scib-metrics (unscaled; every metric in scib_results.csv):\n%s",
        results[headline].to_string(index=False, float_format="{:.3f}".format),
    )
    return results, plot_results(raw_results, info, cells.n_obs)


def _single_batch(cells: AnnData, batch_key: str) -> str | None:
    """The one batch of ``cells``, or None when they come from several."""
    batches = pd.unique(cells.obs[batch_key].astype(str))
    return str(batches[0]) if len(batches) == 1 else None


def _nothing_scored(info: dict[str, Any], n_cells: int) -> tuple[pd.DataFrame, Figure]:
    """The results when no metric applies: every embedding, no score, and why."""
    raw_results = pd.DataFrame(index=[*info["embeddings"], METRIC_TYPE_ROW])
    return results_table(raw_results, info, n_cells), plot_results(raw_results, info, n_cells)


def _metric_flags(metric_class: type, names: list[str]) -> Any:
    """A BioConservation / BatchCorrection with exactly ``names`` on (None if empty)."""
    if not names:
        return None
    return metric_class(**{field.name: field.name in names for field in fields(metric_class)})


def _enabled(metrics: Any) -> list[str]:
    return [] if metrics is None else [f.name for f in fields(metrics) if getattr(metrics, f.name)]


def _benchmark_data(cells: AnnData, info: dict[str, Any]) -> AnnData:
    """The embeddings under their display names, with plain batch and label columns."""
    batch = cells.obs[info["batch_key"]].astype(str).to_numpy()
    # scib-metrics' Benchmarker always reads a label column; with no cell types every
    # cell gets the same label, and only batch metrics run.
    labels = (
        cells.obs[info["cell_type_key"]].astype(str).to_numpy()
        if info["cell_type_key"]
        else np.full(cells.n_obs, "all cells")
    )
    obsm = {name: np.asarray(cells.obsm[key]) for name, key in info["embeddings"].items()}
    obsm[PCA_KEY] = np.asarray(cells.obsm[info["pre_integrated_key"]])
    obs = pd.DataFrame({BATCH: batch, CELL_TYPE: labels}, index=cells.obs_names)
    return AnnData(np.zeros((cells.n_obs, 0), dtype=np.float32), obs=obs, obsm=obsm)


def exact_neighbours(X: np.ndarray, n_neighbors: int, **_: Any) -> Any:
    """Exact k nearest neighbours (the cell itself first), as scib-metrics wants them."""
    from scib_metrics.nearest_neighbors import NeighborsResults  # noqa: PLC0415

    distances, indices = NearestNeighbors(n_neighbors=n_neighbors).fit(X).kneighbors(X)
    return NeighborsResults(indices=indices, distances=distances)


@contextmanager
def neighbour_search(method: str) -> Iterator[Any]:
    """The neighbour search of the benchmark, ``exact`` or scib-metrics' ``pynndescent``.

    With ``exact``, scikit-learn also replaces pynndescent inside scib-metrics' kBET,
    whose diffusion-map neighbours call ``scib_metrics.nearest_neighbors.pynndescent``
    with no way to pass another search: pynndescent's numba compilation costs ~50 s per
    process on two cores while the search itself takes under a second on 20,000 cells.
    """
    if method == "pynndescent":
        yield None
        return
    import scib_metrics.nearest_neighbors  # noqa: PLC0415

    with mock.patch.object(scib_metrics.nearest_neighbors, "pynndescent", exact_neighbours):
        yield exact_neighbours


def results_table(results: pd.DataFrame, info: dict[str, Any], n_cells: int) -> pd.DataFrame:
    """scib-metrics' results (embeddings x metrics + a 'Metric Type' row) as a flat
    table: descriptive columns, the metrics, the three aggregate scores and a note."""
    scores = results.drop(index=METRIC_TYPE_ROW).astype(float)
    for column in SCORE_COLUMNS:
        if column not in scores:
            scores[column] = np.nan
    metric_columns = [c for c in scores.columns if c not in SCORE_COLUMNS]
    scores = scores[[*metric_columns, *SCORE_COLUMNS]]
    is_model = scores.index == info["model"]
    supervised = is_model & bio_is_supervised(info)
    table = scores.reset_index(names="embedding")
    table.insert(1, "role", np.where(is_model, MODEL, BASELINE))
    table.insert(2, "supervised", supervised)
    table.insert(3, "n_cells", n_cells)
    table["note"] = [_note(info, supervised_row) for supervised_row in supervised]
    return table


def _note(info: dict[str, Any], supervised: bool) -> str:
    """What a reader of one row of the results table must know about its scores."""
    note = []
    if info.get("single_batch") is not None:
        note.append(
            f"one batch ('{info['single_batch']}'): batch correction not computed, no batch "
            "effect to remove"
        )
    if not info["cell_type_key"]:
        note.append(
            "no cell-type key: bio conservation not computed"
            if info.get("single_batch") is not None
            else "no cell-type key: bio conservation not computed; BRAS, kBET and graph "
            "connectivity treat all cells as one label"
        )
    if supervised:
        note.append("bio conservation is supervised: the model was given the cell types")
    return "; ".join(note)


def scib_results_to_metrics(scib_results: pd.DataFrame) -> dict[str, dict[str, float]]:
    """The benchmark as MLflow metrics: ``scib/<metric>`` for the model (the same keys for
    every model, so MLflow's compare view lines runs up) and ``scib/<baseline>/<metric>``.

    Args:
        scib_results: Output of :func:`benchmark_integration`.

    Returns:
        ``{key: {"value": v, "step": 0}}`` for every computed (non-missing) score.
    """
    metrics = {}
    score_columns = [c for c in scib_results.columns if c not in DESCRIPTION_COLUMNS]
    for _, row in scib_results.iterrows():
        prefix = "scib" if row["role"] == MODEL else f"scib/{row['embedding']}"
        for column in score_columns:
            if pd.notna(row[column]):
                metrics[f"{prefix}/{snake_case(column)}"] = {
                    "value": float(row[column]),
                    "step": 0,
                }
    return metrics


def snake_case(name: str) -> str:
    """'KMeans NMI' -> 'kmeans_nmi'."""
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")

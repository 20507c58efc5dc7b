"""Nodes of the evaluation pipeline: how well an embedding removes batch effects and
keeps biology, how well the model predicts labels it was not given, where its latent
dimensions put batch and cell type, and which cells look anomalous.

Every node reads ``evaluation_cells``, built once by :func:`prepare_evaluation_cells`,
but the suggestion of cells to label, which reads every embedded cell (the unlabelled
ones are not evaluated), and the labelling rounds, which read earlier runs from MLflow.
The computation lives in the Kedro-free ``omics_vae.evaluation``; a node passes it
the validated ``evaluation`` block, or the part of it that it needs. Nodes that pass
their inputs through unchanged are the library functions themselves.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from anndata import AnnData
from matplotlib.figure import Figure

from omics_vae.evaluation import anomalies, figures, labels, suggestions, umaps
from omics_vae.evaluation.figures import plot_latent_association, plot_umaps
from omics_vae.evaluation.integration import benchmark_integration, scib_results_to_metrics
from omics_vae.evaluation.labels import label_transfer, transfer_metrics
from omics_vae.evaluation.preparation import prepare_evaluation_cells
from omics_vae.evaluation.statistics import compute_latent_association
from omics_vae.schemas.evaluation import EvaluationParams
from omics_vae.store.history import label_transfer_history
from omics_vae.store.reuse import ModelStore

__all__ = [
    "benchmark_integration",
    "compute_latent_association",
    "compute_umaps",
    "label_transfer",
    "labelling_rounds",
    "plot_anomalies",
    "plot_latent_association",
    "plot_umaps",
    "prepare_evaluation_cells",
    "scib_results_to_metrics",
    "score_anomalies",
    "suggest_cells_to_label",
    "transfer_metrics",
]


def compute_umaps(evaluation_cells: AnnData, params: EvaluationParams) -> pd.DataFrame:
    """2-D UMAP of each benchmarked embedding, on the benchmark subsample.

    Args:
        evaluation_cells: Output of :func:`prepare_evaluation_cells`.
        params: The ``evaluation`` parameter block (``umap``).

    Returns:
        See :func:`omics_vae.evaluation.umaps.compute_umaps`.
    """
    return umaps.compute_umaps(evaluation_cells, params.umap)


def score_anomalies(evaluation_cells: AnnData, params: EvaluationParams) -> pd.DataFrame:
    """Per-cell anomaly score from the corrected latent and the reconstruction error.

    Args:
        evaluation_cells: Output of :func:`prepare_evaluation_cells`.
        params: The ``evaluation`` parameter block (``anomaly``).

    Returns:
        See :func:`omics_vae.evaluation.anomalies.score_anomalies`.
    """
    return anomalies.score_anomalies(evaluation_cells, params.anomaly)


def plot_anomalies(
    umap_coordinates: pd.DataFrame, anomaly_scores: pd.DataFrame, params: EvaluationParams
) -> Figure:
    """The model's UMAP coloured by the combined anomaly score, flagged cells ringed.

    Args:
        umap_coordinates: Output of :func:`compute_umaps`.
        anomaly_scores: Output of :func:`score_anomalies`.
        params: The ``evaluation`` parameter block (``anomaly``, for the title).

    Returns:
        See :func:`omics_vae.evaluation.figures.plot_anomalies`.
    """
    return figures.plot_anomalies(umap_coordinates, anomaly_scores, params.anomaly)


def suggest_cells_to_label(
    embeddings: AnnData, params: EvaluationParams
) -> tuple[pd.DataFrame, Figure]:
    """The unlabelled training cells to label next, and where they come from.

    See :func:`omics_vae.evaluation.suggestions.suggest_cells_to_label`.
    """
    return suggestions.suggest_cells_to_label(embeddings, params.label_suggestions)


def labelling_rounds(
    label_transfer_table: pd.DataFrame, embedding_info: dict[str, Any], model_store: ModelStore
) -> tuple[pd.DataFrame, Figure]:
    """This run's label transfer beside earlier runs of the same model on the same cells
    (the MLflow store, the catalog's ``trained_models``), as labels were added.

    See :func:`omics_vae.evaluation.labels.labelling_rounds`.
    """
    history = label_transfer_history(
        model_store, embedding_info["data"]["fingerprint"], embedding_info["model"]
    )
    return labels.labelling_rounds(history, label_transfer_table)

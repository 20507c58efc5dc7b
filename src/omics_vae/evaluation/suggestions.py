"""Which cells to label next: unlabelled training cells ranked by how unsure the model's
label classifier is about them, spread over the clusters of the latent space.

Uncertainty sampling alone picks near-duplicates from the one boundary the classifier
finds hardest; taking the most uncertain cell of each cluster in turn (a cluster-based
diversity step, as in Zhdanov 2019, "Diverse mini-batch active learning") spends an
expert's labels over every unsure region of the data. Only training cells are suggested:
the model learns from them; a labelled validation or test cell only measures it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.figure import Figure
from sklearn.cluster import KMeans

from omics_vae.processing.annotations import label_probabilities_key, predicted_label_columns
from omics_vae.processing.new_labels import NEW_LABEL_COLUMNS
from omics_vae.schemas.evaluation import SuggestionParams

# Clusters fitted on a subsample above this many cells: the regions of an atlas are found
# as well, in seconds instead of minutes.
KMEANS_FIT_CELLS = 50_000
SUGGESTION_COLUMNS = (
    "rank",
    *NEW_LABEL_COLUMNS,
    "predicted",
    "probability",
    "runner_up",
    "runner_up_probability",
    "uncertainty",
    "cluster",
)


def suggest_cells_to_label(
    embeddings: AnnData, params: SuggestionParams
) -> tuple[pd.DataFrame, Figure]:
    """The unlabelled training cells an expert should label first, and a figure of where
    they come from.

    Args:
        embeddings: The embedding pipeline's output (its label column with the labels
            the model was given, the predicted labels and ``obsm`` class probabilities).
        params: The ``evaluation.label_suggestions`` block.

    Returns:
        One row per suggested cell, most useful first (``SUGGESTION_COLUMNS`` plus the
        batch column; ``label`` empty, for the expert to fill in and save as
        ``data/01_raw/new_labels.csv``), and a figure: the uncertainty of every
        unlabelled training cell, and the suggested cells per cluster.
    """
    record = embeddings.uns["embedding"]
    label_key = record.get("label_key") or None
    if label_key is None or label_probabilities_key(label_key) not in embeddings.obsm:
        return _nothing_to_suggest(f"{record['model']} predicts no labels")
    candidates = unlabelled_training_cells(embeddings, label_key, record)
    if not candidates.any():
        return _nothing_to_suggest("every training cell has a label")
    probabilities = np.asarray(embeddings.obsm[label_probabilities_key(label_key)])
    uncertainty = classifier_uncertainty(probabilities, params.uncertainty)
    clusters = latent_clusters(np.asarray(embeddings.obsm[record["latent_key"]]), params)
    chosen = diverse_most_uncertain(
        np.flatnonzero(candidates), uncertainty, clusters, params.n_cells
    )
    table = _suggestion_table(embeddings, label_key, record, probabilities)
    table["uncertainty"] = uncertainty.round(4)
    table["cluster"] = clusters
    return table.iloc[chosen].assign(rank=np.arange(1, len(chosen) + 1)), plot_suggestions(
        uncertainty[candidates], clusters[candidates], uncertainty[chosen], clusters[chosen]
    )


def unlabelled_training_cells(embeddings: AnnData, label_key: str, record: dict) -> np.ndarray:
    """Training cells whose label is missing or the declared unlabelled category."""
    labels = embeddings.obs[label_key].astype(object)
    unlabelled = labels.isna().to_numpy()
    if record.get("unlabelled_category"):
        unlabelled |= (labels.astype(str) == record["unlabelled_category"]).to_numpy()
    if "split" in embeddings.obs:
        unlabelled &= (embeddings.obs["split"].astype(str) == "train").to_numpy()
    return unlabelled


def classifier_uncertainty(probabilities: np.ndarray, kind: str) -> np.ndarray:
    """Per cell, in [0, 1]: the entropy of the class probabilities over its maximum
    (``entropy``), or one minus the gap between the two most probable classes
    (``margin``)."""
    if probabilities.shape[1] < 2:
        return np.zeros(len(probabilities))
    if kind == "margin":
        top_two = np.sort(probabilities, axis=1)[:, -2:]
        return 1.0 - (top_two[:, 1] - top_two[:, 0])
    clipped = np.clip(probabilities, 1e-12, 1.0)
    return -(clipped * np.log(clipped)).sum(axis=1) / np.log(probabilities.shape[1])


def latent_clusters(latent: np.ndarray, params: SuggestionParams) -> np.ndarray:
    """k-means clusters of every cell's corrected latent (``n_clusters`` of them, at most
    one per 20 cells), fitted on at most ``KMEANS_FIT_CELLS`` of them."""
    latent = latent.astype(np.float64)
    n_clusters = max(1, min(params.n_clusters, len(latent) // 20))
    kmeans = KMeans(n_clusters=n_clusters, n_init=3, random_state=params.seed)
    sample = np.random.default_rng(params.seed).permutation(len(latent))[:KMEANS_FIT_CELLS]
    return kmeans.fit(latent[np.sort(sample)]).predict(latent)


def diverse_most_uncertain(
    candidates: np.ndarray, uncertainty: np.ndarray, clusters: np.ndarray, n_cells: int
) -> np.ndarray:
    """Indices of up to ``n_cells`` candidates: the most uncertain cell of each cluster
    in turn (clusters whose best candidate is least certain first), then the next."""
    order = candidates[np.argsort(-uncertainty[candidates], kind="stable")]
    queues = {}
    for index in order:
        queues.setdefault(clusters[index], []).append(index)
    queue_lists = list(queues.values())  # in order of each cluster's most uncertain cell
    chosen = []
    depth = 0
    while len(chosen) < n_cells and any(depth < len(queue) for queue in queue_lists):
        chosen.extend(queue[depth] for queue in queue_lists if depth < len(queue))
        depth += 1
    return np.asarray(chosen[:n_cells], dtype=int)


def _suggestion_table(
    embeddings: AnnData, label_key: str, record: dict, probabilities: np.ndarray
) -> pd.DataFrame:
    """Every cell's id, an empty label, its two most probable labels and the batch."""
    categories = np.asarray(
        embeddings.obs[predicted_label_columns(label_key)[0]].cat.categories, dtype=object
    )
    ranked = np.argsort(-probabilities, axis=1)
    best, second = ranked[:, 0], ranked[:, min(1, probabilities.shape[1] - 1)]
    rows = np.arange(len(probabilities))
    table = pd.DataFrame(
        {
            "rank": 0,
            "cell_id": embeddings.obs_names.astype(str),
            "label": "",
            "predicted": categories[best],
            "probability": probabilities[rows, best].round(4),
            "runner_up": categories[second],
            "runner_up_probability": probabilities[rows, second].round(4),
        }
    )
    batch_key = record.get("batch_key")
    if batch_key and batch_key in embeddings.obs:
        table[batch_key] = embeddings.obs[batch_key].astype(str).to_numpy()
    return table


def _nothing_to_suggest(note: str) -> tuple[pd.DataFrame, Figure]:
    figure = Figure(figsize=(5, 1.5), layout="constrained")
    axis = figure.subplots()
    axis.axis("off")
    axis.text(0.5, 0.5, f"No cell to suggest: {note}", ha="center", va="center", wrap=True)
    return pd.DataFrame(columns=list(SUGGESTION_COLUMNS)), figure


def plot_suggestions(
    uncertainty: np.ndarray,
    clusters: np.ndarray,
    chosen_uncertainty: np.ndarray,
    chosen_clusters: np.ndarray,
) -> Figure:
    """Left: the uncertainty of the unlabelled training cells, the suggested ones apart.
    Right: per cluster, its unlabelled cells and how many of them are suggested."""
    figure = Figure(figsize=(10, 3.6), layout="constrained")
    left, right = figure.subplots(1, 2, width_ratios=(1, 1.4))
    bins = np.linspace(0, 1, 26)
    left.hist(uncertainty, bins=bins, color="0.75", label=f"unlabelled ({len(uncertainty):,})")
    suggested_label = f"suggested ({len(chosen_uncertainty)})"
    left.hist(chosen_uncertainty, bins=bins, color="tab:red", label=suggested_label)
    left.set_xlabel("classifier uncertainty")
    left.set_ylabel("training cells")
    left.set_yscale("log")
    left.legend(frameon=False)
    names = np.unique(clusters)
    unlabelled = np.array([(clusters == name).sum() for name in names])
    suggested = np.array([(chosen_clusters == name).sum() for name in names])
    positions = np.arange(len(names))
    right.bar(positions, unlabelled, color="0.75", label="unlabelled")
    right.bar(positions, suggested, color="tab:red", label="suggested")
    right.set_xticks(positions, [str(name) for name in names])
    right.set_xlabel("cluster of the latent (k-means)")
    right.set_ylabel("cells")
    right.set_yscale("log")
    right.legend(frameon=False)
    figure.suptitle(
        f"Cells to label next: {len(chosen_uncertainty)} of {len(uncertainty):,} unlabelled "
        f"training cells, from {len(np.unique(chosen_clusters))} clusters"
    )
    return figure

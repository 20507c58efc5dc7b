"""The evaluated cells that every single-cell evaluation step reads, and the names the
evaluation modules share.

``evaluation_cells``, made once by ``preparation.prepare_evaluation_cells``, holds the
evaluated cells' ``obs``, the model's latents and the baseline embeddings in ``obsm``, and
in ``uns["evaluation"]`` what each key holds. The integration benchmark and the UMAPs use
a stratified subsample of at most ``max_cells`` cells (``obs`` column ``in_subsample``);
the latent statistics and the anomaly scores use every evaluated cell.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from anndata import AnnData

# The user's own settings (git-ignored), merged key by key over conf/base.
PARAMETERS_FILE = "conf/local/parameters_evaluation.yml"
RECORD_KEY = "evaluation"
SUBSAMPLE_COLUMN = "in_subsample"
RECONSTRUCTION_ERROR = "reconstruction_error"
LIBRARY_SIZE = "library_size"  # counts of the modelled genes, from model_input
MODEL, BASELINE = "model", "baseline"
PCA_KEY, HARMONY_KEY = "X_pca", "X_harmony"
BATCH, CELL_TYPE = "batch", "cell_type"
# The row of scib-metrics' get_results() that names each column's metric family.
METRIC_TYPE_ROW = "Metric Type"


class EvaluationInputError(ValueError):
    """The embeddings, the processed data or the parameters cannot be evaluated."""


def benchmark_subsample(evaluation_cells: AnnData) -> AnnData:
    """The cells of the benchmark subsample (``obs["in_subsample"]``), as a view."""
    return evaluation_cells[evaluation_cells.obs[SUBSAMPLE_COLUMN].to_numpy()]


def cell_labels(obs: pd.DataFrame, info: dict[str, Any]) -> dict[str, Any]:
    """Each cell's batch and cell type as strings (cell type None without its key).

    Args:
        obs: The cells' ``obs``.
        info: ``uns["evaluation"]`` of the evaluated cells.

    Returns:
        ``{"batch": array, "cell_type": array or None}``.
    """
    cell_type_key = info["cell_type_key"]
    return {
        BATCH: obs[info["batch_key"]].astype(str).to_numpy(),
        CELL_TYPE: obs[cell_type_key].astype(str).to_numpy() if cell_type_key else None,
    }


def bio_is_supervised(info: dict[str, Any]) -> bool:
    """Whether the model's bio-conservation scores are supervised: it saw the labels."""
    return bool(info["supervised"] and info["cell_type_key"])

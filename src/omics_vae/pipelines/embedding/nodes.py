"""Nodes of the embedding pipeline: posterior-mean latents of every processed cell.

The node validates the ``embedding`` block and calls ``omics_vae.embedding.cells``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from anndata import AnnData

from omics_vae.embedding import cells
from omics_vae.models import BaseVAE
from omics_vae.schemas.embedding import EmbeddingParams


def embed_cells(
    model_input: AnnData,
    model: BaseVAE,
    model_card: dict[str, Any],
    params: EmbeddingParams,
    new_labels: pd.DataFrame | None = None,
) -> tuple[AnnData, pd.DataFrame, dict[str, Any]]:
    """Posterior-mean latents of every cell of every split, for the catalog's ``model``
    or, with ``embedding.model_uri``, a registered version (see
    ``omics_vae.hooks.RegisteredModelHooks``); the expert's ``new_labels`` are in the
    label column as training merged them.

    Returns:
        ``(embeddings, latent_table, embedding_info)``; see
        ``omics_vae.embedding.cells.embed_cells``.
    """
    return cells.embed_cells(model_input, model, model_card, params, new_labels)

"""Nodes of the paired_embedding pipeline: the shared latent of every sample (from A, from
B, joint) and each platform imputed from the other, back in the data's original units.

The nodes validate the ``paired.embedding`` block and call ``omics_vae.embedding.paired``;
the two table nodes are its functions as they are.
"""

from __future__ import annotations

from typing import Any

from anndata import AnnData

from omics_vae.embedding import paired
from omics_vae.embedding.paired import imputed_tables, paired_latent_table
from omics_vae.models import BaseVAE
from omics_vae.schemas.paired_embedding import PairedEmbeddingParams

__all__ = [
    "embed_paired_samples",
    "imputed_tables",
    "paired_embedding_info",
    "paired_latent_table",
]


def embed_paired_samples(
    paired_model_input: AnnData,
    paired_model: BaseVAE,
    paired_scalers: dict[str, Any],
    params: PairedEmbeddingParams,
) -> tuple[AnnData, AnnData]:
    """Latents and imputations of every sample: ``(paired_embeddings, paired_imputed)``.

    See ``omics_vae.embedding.paired.embed_paired_samples``.
    """
    config = params
    return paired.embed_paired_samples(paired_model_input, paired_model, paired_scalers, config)


def paired_embedding_info(
    paired_embeddings: AnnData,
    paired_model_input: AnnData,
    paired_model_card: dict[str, Any],
    params: PairedEmbeddingParams,
) -> dict[str, Any]:
    """The record beside the embedding: which model and data made it, and what it holds."""
    config = params
    return paired.paired_embedding_info(
        paired_embeddings, paired_model_input, paired_model_card, config
    )

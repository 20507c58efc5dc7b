"""Nodes of the paired_embedding pipeline: the shared latent of every sample (from A, from
B, joint) and each platform imputed from the other, back in the data's original units.

Every node is a function of ``omics_vae.embedding.paired`` as it is: the
``paired.embedding`` block reaches it already validated (a ``PairedEmbeddingParams``).
"""

from __future__ import annotations

from omics_vae.embedding.paired import (
    embed_paired_samples,
    imputed_tables,
    paired_embedding_info,
    paired_latent_table,
)

__all__ = [
    "embed_paired_samples",
    "imputed_tables",
    "paired_embedding_info",
    "paired_latent_table",
]

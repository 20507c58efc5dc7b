"""Schema of ``conf/base/parameters_embedding.yml``."""

from __future__ import annotations

from pydantic import Field

from omics_vae.params import StrictModel


class EmbeddingParams(StrictModel):
    batch_size: int = Field(
        4096, gt=0, description="Cells per forward pass; bounds the memory of embedding."
    )
    reconstruction_error: bool = Field(
        True, description="Add each cell's negative log-likelihood under the model to obs."
    )

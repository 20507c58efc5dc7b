"""Schema of ``paired.embedding`` in ``conf/base/parameters_paired.yml``."""

from __future__ import annotations

from pydantic import Field

from omics_vae.params import StrictModel


class PairedEmbeddingParams(StrictModel):
    batch_size: int = Field(1024, gt=0, description="Samples per forward pass.")

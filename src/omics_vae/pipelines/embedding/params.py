"""Schema of ``conf/base/parameters_embedding.yml``."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from omics_vae.params import StrictModel


class EmbeddingParams(StrictModel):
    batch_size: int = Field(
        4096, gt=0, description="Cells per forward pass; bounds the memory of embedding."
    )
    reconstruction_error: bool = Field(
        True, description="Add each cell's negative log-likelihood under the model to obs."
    )
    model_uri: str | None = Field(
        None,
        description=(
            "A registered model to embed with instead of the catalog's latest checkpoint: "
            "`models:/<name>@<alias>` (e.g. `models:/invae@champion`) or "
            "`models:/<name>/<version>`; null embeds with the catalog's `model`."
        ),
    )

    @field_validator("model_uri")
    @classmethod
    def _registry_uri(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"models:/[^/@]+(@[^/@]+|/\d+)", value):
            raise ValueError(
                "must be models:/<name>@<alias> or models:/<name>/<version>, "
                "e.g. models:/invae@champion"
            )
        return value

"""Schema of ``conf/base/parameters_embedding.yml``."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from omics_vae.params import StrictModel

# A registered version (by alias or number) or a training run's model folder.
MODEL_URI = re.compile(r"models:/[^/@]+(@[^/@]+|/\d+)|runs:/[0-9a-f]{32}/[^@]+")


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
            "A model in the MLflow store to embed with instead of the catalog's latest "
            "checkpoint: `models:/<name>@<alias>` (e.g. `models:/invae@champion`), "
            "`models:/<name>/<version>` or `runs:/<run id>/model`; it replaces the "
            "catalog's `model` and `model_card`, so no local checkpoint is needed. null "
            "embeds with the catalog's `model`."
        ),
    )

    @field_validator("model_uri")
    @classmethod
    def _registry_uri(cls, value: str | None) -> str | None:
        if value is not None and not MODEL_URI.fullmatch(value):
            raise ValueError(
                "must be models:/<name>@<alias>, models:/<name>/<version> or "
                "runs:/<run id>/model, e.g. models:/invae@champion"
            )
        return value

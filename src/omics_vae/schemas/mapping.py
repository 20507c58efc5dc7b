"""Schema of ``conf/base/parameters_mapping.yml``."""

from __future__ import annotations

from pydantic import Field

from omics_vae.params import StrictModel


class MappingParams(StrictModel):
    """How a query is mapped onto the trained model (``kedro run --pipelines mapping``)."""

    max_epochs: int = Field(
        100, gt=0, description="Epochs of fine-tuning the new batches' columns (scArches)."
    )
    learning_rate: float = Field(1e-3, gt=0, description="Adam's learning rate for them.")
    train_batch_size: int = Field(128, gt=1, description="Query cells per training step.")
    batch_size: int = Field(4096, gt=0, description="Cells per forward pass when embedding.")
    seed: int = Field(0, description="Seed of the fine-tuning and its validation split.")
    num_threads: int | None = Field(
        None, gt=0, description="CPU threads for torch; null: the free cores, as in training."
    )
    umap_seed: int = Field(0, description="Seed of the reference + query UMAP.")

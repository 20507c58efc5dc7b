"""The paired_embedding pipeline."""

from omics_vae.pipelines.paired_embedding.pipeline import create_pipeline

__all__ = ["create_pipeline"]

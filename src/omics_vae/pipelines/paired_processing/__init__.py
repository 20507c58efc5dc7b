"""The paired_processing pipeline."""

from omics_vae.pipelines.paired_processing.pipeline import create_pipeline

__all__ = ["create_pipeline"]

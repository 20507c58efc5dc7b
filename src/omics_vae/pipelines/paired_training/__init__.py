"""The paired_training pipeline."""

from omics_vae.pipelines.paired_training.pipeline import create_pipeline

__all__ = ["create_pipeline"]

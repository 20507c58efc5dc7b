"""Training pipeline: fit inVAE or the scVI-style baseline on the processed cells."""

from omics_vae.pipelines.training.pipeline import create_pipeline

__all__ = ["create_pipeline"]

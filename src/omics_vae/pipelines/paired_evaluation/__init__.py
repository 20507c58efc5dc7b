"""The paired_evaluation pipeline."""

from omics_vae.pipelines.paired_evaluation.pipeline import create_pipeline

__all__ = ["create_pipeline"]

"""Evaluation pipeline: integration benchmark, UMAPs, latent statistics and anomalies."""

from omics_vae.pipelines.evaluation.pipeline import create_pipeline

__all__ = ["create_pipeline"]

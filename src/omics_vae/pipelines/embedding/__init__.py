"""Embedding pipeline: posterior-mean latents of every processed cell."""

from omics_vae.pipelines.embedding.pipeline import create_pipeline

__all__ = ["create_pipeline"]

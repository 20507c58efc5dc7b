"""Mapping pipeline: a query embedded with the trained model (``kedro run --pipelines mapping``)."""

from omics_vae.pipelines.mapping.pipeline import create_pipeline

__all__ = ["create_pipeline"]

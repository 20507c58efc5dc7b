"""The paired family: all four paired pipelines in one."""

from omics_vae.pipelines.paired.pipeline import create_pipeline

__all__ = ["create_pipeline"]

"""Single-cell data processing: validation, QC, normalisation, HVG selection, split."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]

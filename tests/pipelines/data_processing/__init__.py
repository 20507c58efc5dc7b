"""Tests of the single-cell data-processing pipeline."""

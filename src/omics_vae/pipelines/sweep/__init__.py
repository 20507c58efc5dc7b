"""Sweeps: the training → embedding → evaluation pipelines once per variant, then a comparison."""

"""Torch data loading for omics models: in-memory tensors and batch loaders (no Kedro)."""

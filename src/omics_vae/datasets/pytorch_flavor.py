"""``mlflow.pytorch`` for the catalog's MLflow model entries, imported when a model is
logged or loaded.

kedro-mlflow imports an ``MlflowModelTrackingDataset``'s flavor module when the catalog
creates the entry, which is at the start of every run, and ``mlflow.pytorch`` imports
torch: a data-only run would pay for it. The catalog names this module as the flavor
instead; it passes kedro-mlflow's two calls on to ``mlflow.pytorch``, so what is logged
is an ordinary ``mlflow.pytorch`` model (``mlflow.pytorch.load_model(uri)`` loads it).
"""

from __future__ import annotations

import importlib
from typing import Any


def _pytorch() -> Any:
    return importlib.import_module("mlflow.pytorch")


def log_model(*args: Any, **kwargs: Any) -> Any:
    """``mlflow.pytorch.log_model``."""
    return _pytorch().log_model(*args, **kwargs)


def load_model(*args: Any, **kwargs: Any) -> Any:
    """``mlflow.pytorch.load_model``."""
    return _pytorch().load_model(*args, **kwargs)

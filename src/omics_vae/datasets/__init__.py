"""Custom Kedro datasets of the project, in the style of kedro-datasets."""

from __future__ import annotations

import importlib
from typing import Any

# Each dataset's module, imported when the catalog (or a user) first asks for the class:
# a run that loads no checkpoint imports no Lightning.
_WHERE = {
    "H5ADDataset": "h5ad_dataset",
    "LightningCheckpointDataset": "lightning_checkpoint_dataset",
    "RegisteredModelDataset": "registered_model_dataset",
    "SimulatedCountsDataset": "simulated_counts_dataset",
    "SimulatedPairedDataset": "simulated_paired_dataset",
    "TrainedModelStoreDataset": "trained_model_store_dataset",
}

__all__ = sorted(_WHERE)  # noqa: PLE0605  (the names above, imported lazily)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)


def __dir__() -> list[str]:
    return __all__

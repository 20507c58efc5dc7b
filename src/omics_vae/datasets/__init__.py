"""Custom Kedro datasets of the project, in the style of kedro-datasets."""

from __future__ import annotations

from omics_vae.lazy import lazy_exports

# Each dataset's module, imported when the catalog (or a user) first asks for the class:
# a run that loads no checkpoint imports no Lightning.
_WHERE = {
    "H5ADDataset": "h5ad_dataset",
    "LightningCheckpointDataset": "lightning_checkpoint_dataset",
    "NewLabelsDataset": "new_labels_dataset",
    "RegisteredModelDataset": "registered_model_dataset",
    "SimulatedCountsDataset": "simulated_counts_dataset",
    "SimulatedPairedDataset": "simulated_paired_dataset",
    "TrainedModelStoreDataset": "trained_model_store_dataset",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _WHERE)

"""Custom Kedro datasets of the project, in the style of kedro-datasets."""

from omics_vae.datasets.h5ad_dataset import H5ADDataset
from omics_vae.datasets.lightning_checkpoint_dataset import LightningCheckpointDataset
from omics_vae.datasets.registered_model_dataset import RegisteredModelDataset
from omics_vae.datasets.simulated_counts_dataset import SimulatedCountsDataset
from omics_vae.datasets.simulated_paired_dataset import SimulatedPairedDataset
from omics_vae.datasets.trained_model_store_dataset import TrainedModelStoreDataset

__all__ = [
    "H5ADDataset",
    "LightningCheckpointDataset",
    "RegisteredModelDataset",
    "SimulatedCountsDataset",
    "SimulatedPairedDataset",
    "TrainedModelStoreDataset",
]

"""``TrainedModelStoreDataset`` hands the training nodes the MLflow store to search for a
model that is already trained (train once)."""

from __future__ import annotations

from typing import Any

import mlflow
from kedro.io import AbstractDataset

from omics_vae.datasets.errors import DatasetInputError
from omics_vae.store.reuse import ModelStore


class TrainedModelStoreDataset(AbstractDataset[None, ModelStore]):
    """``TrainedModelStoreDataset`` loads a handle on the MLflow store of trained models.

    Read-only: models enter the store through training runs. The training nodes take it
    as an input and search it, by training fingerprint, for a finished model trained on
    the same data with the same parameters (``omics_vae.store.reuse``), so that store
    access is a catalog entry kedro-viz shows, not hidden in a node. The store is the
    session's MLflow tracking URI (kedro-mlflow sets it from ``conf/<env>/mlflow.yml``)
    unless ``tracking_uri`` is given.

    Examples:
        Using the YAML API:

        ```yaml
        trained_models:
          type: omics_vae.datasets.TrainedModelStoreDataset
        ```

        Using the Python API:

        ```python
        from omics_vae.datasets import TrainedModelStoreDataset

        store = TrainedModelStoreDataset(tracking_uri="sqlite:///mlflow.db").load()
        ```
    """

    def __init__(
        self, *, tracking_uri: str | None = None, metadata: dict[str, Any] | None = None
    ) -> None:
        """Creates a new instance of ``TrainedModelStoreDataset``.

        Args:
            tracking_uri: The MLflow store; ``None``: the tracking URI when loaded.
            metadata: Any arbitrary metadata; ignored by Kedro, used by plugins.
        """
        self._tracking_uri = tracking_uri
        self.metadata = metadata

    def load(self) -> ModelStore:
        return ModelStore(self._tracking_uri or mlflow.get_tracking_uri())

    def save(self, data: None) -> None:
        raise DatasetInputError(
            "TrainedModelStoreDataset is read-only: models enter the store through training runs."
        )

    def _describe(self) -> dict[str, Any]:
        return {"tracking_uri": self._tracking_uri}
